//! Unit tests of the token, Host and Origin rules.

use super::*;

#[test]
fn loopback_hosts() {
    for h in [
        "127.0.0.1:3000",
        "localhost",
        "LOCALHOST:1",
        "[::1]:3000",
        "127.1.2.3",
        "a.localhost:9",
    ] {
        assert!(is_loopback_host(h), "{h}");
    }
    for h in [
        "example.com",
        "10.0.0.1:3000",
        "evil.com:3000",
        "[2001:db8::1]:1",
        "127.0.0.1.evil.com",
    ] {
        assert!(!is_loopback_host(h), "{h}");
    }
}

#[test]
fn tokens_and_origins() {
    let bound: SocketAddr = "127.0.0.1:4567".parse().unwrap();
    let auth = Auth::new(
        "secret",
        TokenSource::Given,
        bound,
        &["https://app.example.com/".to_string()],
    );
    assert!(auth.token_matches("secret"));
    assert!(!auth.token_matches("secret "));
    assert!(!auth.token_matches(""));
    assert!(auth.origin_allowed("http://127.0.0.1:4567"));
    assert!(auth.origin_allowed("http://localhost:4567/"));
    assert!(auth.origin_allowed("HTTPS://APP.example.com"));
    assert!(!auth.origin_allowed("http://localhost:4568"));
    assert!(!auth.origin_allowed("null"));
    assert!(auth.host_allowed("localhost:4567"));
    assert!(!auth.host_allowed("attacker.example:4567"));
    let open = Auth::new("t", TokenSource::Given, "0.0.0.0:1".parse().unwrap(), &[]);
    assert!(open.host_allowed("my-pod.cluster.local:1"));
}

#[test]
fn token_file_is_created_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (t1, s1) = load_token(dir.path(), None).unwrap();
    assert_eq!(t1.len(), 64);
    assert!(t1.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(s1, TokenSource::File(dir.path().join("token")));
    let mode = std::fs::metadata(dir.path().join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (t2, _) = load_token(dir.path(), None).unwrap();
    assert_eq!(t1, t2, "the second start reads the same token");
    let (t3, s3) = load_token(dir.path(), Some("given")).unwrap();
    assert_eq!((t3.as_str(), s3), ("given", TokenSource::Given));
}

#[test]
fn query_tokens_are_percent_decoded() {
    assert_eq!(percent_decode("a%2Bb+c%zz"), "a+b c%zz");
}
