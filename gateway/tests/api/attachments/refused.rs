//! What is refused, with which status and reason; the session and the server go on.

use serde_json::json;

use super::*;

#[tokio::test]
async fn uploads_are_typed_by_their_bytes_and_refused_with_the_right_status() {
    let (app, _) = app_with_agent("att-refused", &[]).await;
    let (mut c, greeting) = app.connect_customer("").await;

    // A PNG named and labelled as a PDF is a PNG.
    let up = customer_upload(
        &app,
        &greeting,
        "invoice.pdf",
        "application/pdf",
        &png(30, 20, 5),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.json()["kind"], "image");
    // A real PDF is a file, kept as sent.
    let pdf = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let up = customer_upload(&app, &greeting, "report.pdf", "application/pdf", &pdf).await;
    assert_eq!(up.status, 200, "{}", up.text());
    assert_eq!(up.json()["kind"], "file");
    assert_eq!(up.json()["bytes"], pdf.len());
    assert_eq!(up.json()["width"], Value::Null);

    let html = b"<!DOCTYPE html><html><script>alert(1)</script></html>";
    let up = customer_upload(&app, &greeting, "photo.jpg", "image/jpeg", html).await;
    assert_eq!(up.status, 415, "{}", up.text());
    assert!(
        up.json()["message"].as_str().unwrap().contains("HTML"),
        "{}",
        up.text()
    );
    assert_eq!(up.json()["error"], "unsupported_type");

    let zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00rest of a zip archive".to_vec();
    let up = customer_upload(&app, &greeting, "photos.zip", "application/zip", &zip).await;
    assert_eq!(up.status, 415);
    assert!(up.text().contains("zip"), "{}", up.text());

    let bomb = png_header(60_000, 60_000);
    let up = customer_upload(&app, &greeting, "big.png", "image/png", &bomb).await;
    assert_eq!(up.status, 413, "{}", up.text());
    assert!(up.text().contains("60000"), "{}", up.text());

    // 11 MiB: refused from its Content-Length, and counted when it comes without one.
    let mut big = b"%PDF-1.4\n".to_vec();
    big.resize(11 << 20, b'x');
    let up = customer_upload(&app, &greeting, "big.pdf", "application/pdf", &big).await;
    assert_eq!(up.status, 413, "{}", up.text());
    let session = greeting["session_id"].as_str().unwrap();
    let token = greeting["resume_token"].as_str().unwrap();
    let path = format!("/upload?session={session}");
    let up = http_chunked(&app, &path, &[("X-Kefu-Resume-Token", token)], &big).await;
    assert_eq!(up.status, 413, "{}", up.text());

    // Without the session's token, nothing.
    let path = format!("/upload?session={session}");
    let wrong = http(
        &app,
        "POST",
        &path,
        &[("X-Kefu-Resume-Token", "nope")],
        &png(4, 4, 1),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(http(&app, "POST", "/upload", &[], b"x").await.status, 400);

    // The session is fine and the refused uploads cannot be sent.
    c.send(json!({"type":"message","id":"m1","text":"","attachment":"0123"}))
        .await;
    assert_eq!(c.recv_type("error").await["code"], "bad_field");
    c.say("m2", "在吗").await;
    assert_eq!(c.recv_type("ack").await["id"], "m2");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn uploads_per_chat_are_rate_limited_and_capped_in_bytes() {
    let (app, _) = app_with_agent(
        "att-caps",
        &[
            ("KEFU__ATTACHMENTS__PER_MINUTE", "2"),
            ("KEFU__ATTACHMENTS__SESSION_BYTES", "100000"),
        ],
    )
    .await;
    let (_c, greeting) = app.connect_customer("").await;
    let small = png(8, 8, 9);
    for _ in 0..2 {
        assert_eq!(
            customer_upload(&app, &greeting, "a.png", "image/png", &small)
                .await
                .status,
            200
        );
    }
    let third = customer_upload(&app, &greeting, "a.png", "image/png", &small).await;
    assert_eq!(third.status, 429, "{}", third.text());
    let (_c2, other) = app.connect_customer("").await;
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.resize(150_000, b'x');
    let up = customer_upload(&app, &other, "a.pdf", "application/pdf", &pdf).await;
    assert_eq!(up.status, 413, "{}", up.text());
    app.stop().await.unwrap();
}
