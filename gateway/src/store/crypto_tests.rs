//! Unit tests of [`super`]: formats, associated data, rotation, key loading.
use super::*;

const AT: Aad<'static> = Aad {
    table: "t",
    row: "r1",
    field: "f",
};

#[test]
fn fields_are_bound_to_their_row_and_field_and_old_ones_still_read() {
    let ring = KeyRing::from_keys(&[("k1", [7; 32])]).unwrap();
    let sealed = ring.encrypt_field("手机 13812345678", AT).unwrap();
    assert!(sealed.starts_with("v2.k1:"), "{sealed}");
    assert_eq!(ring.decrypt_field(&sealed, AT).unwrap(), "手机 13812345678");
    let other_row = Aad { row: "r2", ..AT };
    let other_field = Aad { field: "g", ..AT };
    for wrong in [other_row, other_field] {
        assert!(matches!(
            ring.decrypt_field(&sealed, wrong),
            Err(CryptoError::Decrypt(_))
        ));
    }
    let old = ring.encrypt("earlier format").unwrap();
    assert_eq!(
        ring.decrypt_field(&old, other_row).unwrap(),
        "earlier format"
    );
    // The blind index is not keyed with the encryption key itself any more.
    let idx = ring.blind_indexes("v1");
    assert!(idx[0].starts_with("v2.k1:") && idx.len() == 2, "{idx:?}");
    assert_ne!(
        idx[0].split_once(':').unwrap().1,
        idx[1].split_once(':').unwrap().1
    );
}

#[test]
fn round_trip_and_random_nonce() {
    let ring = KeyRing::from_keys(&[("k1", [7; 32])]).unwrap();
    let a = ring.encrypt("手机 13812345678").unwrap();
    let b = ring.encrypt("手机 13812345678").unwrap();
    assert_ne!(a, b, "a fresh nonce per field");
    assert!(a.starts_with("k1:"));
    assert!(!a.contains("13812345678"));
    assert_eq!(ring.decrypt(&a).unwrap(), "手机 13812345678");
}

#[test]
fn wrong_key_fails_and_rotation_keeps_old_ids() {
    let old = KeyRing::from_keys(&[("k1", [1; 32])]).unwrap();
    let stored = old.encrypt("secret").unwrap();
    let wrong = KeyRing::from_keys(&[("k1", [2; 32])]).unwrap();
    assert!(matches!(
        wrong.decrypt(&stored),
        Err(CryptoError::Decrypt(_))
    ));
    let rotated = KeyRing::from_keys(&[("k2", [2; 32]), ("k1", [1; 32])]).unwrap();
    assert_eq!(rotated.decrypt(&stored).unwrap(), "secret");
    assert!(rotated.encrypt("x").unwrap().starts_with("k2:"));
    assert!(rotated.blind_indexes("v1").contains(&old.blind_index("v1")));
}

#[test]
fn key_file_and_env_are_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("kefu-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("keys");
    let k2 = B64.encode([2u8; 32]);
    let k1 = B64.encode([1u8; 32]);
    std::fs::write(&file, format!("# newest first\nk2={k2}\nk1={k1}\n")).unwrap();
    let ring = KeyRing::load(&KeySource::default(), &file).unwrap();
    assert_eq!(ring.current_id(), "k2");
    let none = KeyRing::load(&KeySource::default(), Path::new(""));
    assert!(matches!(none, Err(CryptoError::NoKey)));
    let short = KeySource {
        env_key: Some(Secret::new(B64.encode([1u8; 16]))),
        env_key_id: None,
    };
    let err = KeyRing::load(&short, Path::new(""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected 32"), "{err}");
}
