//! Shared by the integration tests that need a private network namespace.

use group_std::netns;

/// Runs `inside(ifindex)` in a private namespace made by re-executing this test binary there
/// (only `test` runs); skipped, with the reason printed, only where namespaces can't be made.
/// The inner run leaves a marker file, so a test filter that matched nothing can't pass.
pub fn netns_test(test: &str, inside: fn(u32)) {
    const MARKER: &str = "DTLS_GROUP_TEST_NETNS_MARKER";
    if let Some(index) = netns::inside() {
        inside(index);
        std::fs::write(std::env::var(MARKER).unwrap(), b"done").unwrap();
        return;
    }
    let marker =
        std::env::temp_dir().join(format!("dtls-group-netns-{}-{test}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let exe = std::env::current_exe().unwrap();
    let args: Vec<std::ffi::OsString> = [test, "--exact", "--test-threads=1"]
        .iter()
        .map(Into::into)
        .collect();
    match netns::run_with_env(&exe, &args, &[(MARKER, marker.as_os_str())]) {
        netns::Outcome::Unavailable(reason) => println!("SKIPPED: {reason}"),
        netns::Outcome::Ran(status) => {
            assert!(status.success(), "inside the namespace: {status}");
            assert!(marker.exists(), "the test did not run inside the namespace");
            let _ = std::fs::remove_file(&marker);
        }
    }
}
