//! Static-file path resolution: whatever the request path, the answer is a file inside
//! the root, a redirect, or a refusal — never anything outside.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use wsserver::http::static_files::{resolve, Target};

fn root() -> &'static (PathBuf, PathBuf) {
    static ROOT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("wss-fuzz-static-{}", std::process::id()));
        let root = base.join("www");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("index.html"), "i").unwrap();
        std::fs::write(root.join("a/b/f.txt"), "f").unwrap();
        std::fs::write(base.join("secret"), "s").unwrap();
        let _ = std::os::unix::fs::symlink(base.join("secret"), root.join("a/out"));
        let _ = std::os::unix::fs::symlink(&base, root.join("up"));
        (base, root.canonicalize().unwrap())
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, root) = root();
    let mut path = b"/".to_vec();
    path.extend_from_slice(data);
    if let Ok(Target::File(p)) = resolve(root, &path, "index.html") {
        assert!(p.starts_with(root), "{p:?} escaped {root:?}");
    }
});
