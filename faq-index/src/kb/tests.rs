use super::*;

fn write(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faq-index-kb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

const GOOD: &str = r#"
[[entry]]
id = "returns-7day"
category = "after_sale"
lang = "zh"
questions = ["七天无理由退货怎么弄", "买了不想要了能退吗"]
answer = "支持七天无理由退货。"
keywords = ["七天无理由", "退货"]

[[entry]]
id = "shipping-time"
category = "logistics"
lang = "zh"
questions = ["什么时候发货"]
answer = "48小时内发货。"
"#;

#[test]
fn loads_a_toml_directory_and_jsonl() {
    let jsonl = r#"{"id":"en-1","category":"logistics","questions":["where is my parcel"],"answer":"On its way.","lang":"en"}"#;
    let dir = write("good", &[("a.toml", GOOD), ("b.jsonl", jsonl)]);
    let kb = KnowledgeBase::load(&dir).unwrap();
    assert_eq!(kb.len(), 3);
    assert_eq!(kb.get("returns-7day").unwrap().keywords.len(), 2);
    assert!(kb.get("shipping-time").unwrap().keywords.is_empty());
    let kb = KnowledgeBase::load(&dir.join("b.jsonl")).unwrap();
    assert_eq!(kb.entries()[0].id, "en-1");
}

#[test]
fn unknown_toml_field_names_file_line_and_field() {
    let bad = GOOD.replace(
        "answer = \"48小时内发货。\"",
        "answer = \"x\"\nanswr = \"y\"",
    );
    let dir = write("unknown", &[("kb.toml", &bad)]);
    let err = KnowledgeBase::load(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("kb.toml:"), "{msg}");
    assert!(msg.contains("answr"), "{msg}");
    match err {
        KbError::Syntax { at, field, .. } => {
            assert_eq!(field.as_deref(), Some("answr"));
            assert!(at.line >= 14, "line {}", at.line);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_answer_and_questions_are_rejected_with_the_entry_line() {
    let bad = GOOD.replace("answer = \"48小时内发货。\"", "answer = \" \"");
    let err = KnowledgeBase::load(&write("answer", &[("kb.toml", &bad)])).unwrap_err();
    match &err {
        KbError::Invalid { at, field, id, .. } => {
            assert_eq!(
                (*field, id.as_str(), at.line),
                ("answer", "shipping-time", 10)
            );
        }
        other => panic!("{other:?}"),
    }
    let bad = GOOD.replace("questions = [\"什么时候发货\"]", "questions = []");
    let err = KnowledgeBase::load(&write("questions", &[("kb.toml", &bad)])).unwrap_err();
    assert!(err.to_string().contains("field `questions`"), "{err}");
    let bad = GOOD.replace("category = \"logistics\"", "category = \"shipping\"");
    let err = KnowledgeBase::load(&write("category", &[("kb.toml", &bad)])).unwrap_err();
    assert!(err.to_string().contains("field `category`"), "{err}");
}

#[test]
fn duplicate_ids_across_files_name_both_places() {
    let dir = write("dup", &[("a.toml", GOOD), ("b.toml", GOOD)]);
    let err = KnowledgeBase::load(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("duplicate id `returns-7day`"), "{msg}");
    assert!(
        msg.contains("a.toml:2") && msg.contains("b.toml:2"),
        "{msg}"
    );
}

#[test]
fn jsonl_errors_name_the_line_and_field() {
    let lines = concat!(
        r#"{"id":"a","category":"c","questions":["q"],"answer":"x","lang":"en"}"#,
        "\n",
        r#"{"id":"b","category":"c","questions":["q"],"lang":"en"}"#,
    );
    let dir = write("jsonl", &[("kb.jsonl", lines)]);
    let err = KnowledgeBase::load(&dir.join("kb.jsonl")).unwrap_err();
    match &err {
        KbError::Syntax { at, field, .. } => {
            assert_eq!(at.line, 2);
            assert_eq!(field.as_deref(), Some("answer"));
        }
        other => panic!("{other:?}"),
    }
    let bad = r#"{"id":"a","category":"c","questions":["q"],"answer":"x","lang":"fr"}"#;
    let err = KnowledgeBase::load(&write("lang", &[("kb.jsonl", bad)]).join("kb.jsonl"));
    assert!(err
        .unwrap_err()
        .to_string()
        .contains(":1: entry `a`: field `lang`"));
}

#[test]
fn from_entries_rejects_duplicates() {
    let e = Entry {
        id: "x".into(),
        category: "human".into(),
        questions: vec!["q".into()],
        answer: "a".into(),
        lang: "en".into(),
        keywords: vec![],
        quick_replies: vec![],
        needs: None,
    };
    let err = KnowledgeBase::from_entries(vec![e.clone(), e]).unwrap_err();
    assert!(matches!(err, KbError::DuplicateId { .. }));
}
