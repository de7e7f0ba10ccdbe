//! The committed header and LuaJIT declarations must be exactly what the build
//! generates from `src/ffi/` (run `make header` after changing the C API).

#[test]
fn committed_header_matches_the_generated_one() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/wsserver.h"));
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/wsserver.h"))
            .unwrap();
    assert!(
        committed == generated,
        "include/wsserver.h is stale: run `make header` and commit it"
    );
}

#[test]
fn committed_lua_cdefs_match_the_generated_ones() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/wsserver_cdefs.lua"));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/lua/wsserver_cdefs.lua"
    ))
    .unwrap();
    assert!(
        committed == generated,
        "lua/wsserver_cdefs.lua is stale: run `make header` and commit it"
    );
}

#[test]
fn every_exported_function_is_documented_in_the_header() {
    let header = include_str!(concat!(env!("OUT_DIR"), "/wsserver.h"));
    let lines: Vec<&str> = header.lines().collect();
    let mut functions = 0;
    for (i, line) in lines.iter().enumerate() {
        // Function declarations start at column 0 with a return type and contain "wss_...(".
        let is_fn = !line.starts_with(' ')
            && !line.starts_with("typedef")
            && line.contains(" wss_")
            && line.contains('(');
        if !is_fn {
            continue;
        }
        functions += 1;
        let before = lines[..i]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap();
        assert!(before.trim() == "*/", "no doc comment before: {line}");
    }
    assert!(functions >= 30, "found only {functions} functions");
}

#[test]
fn the_lua_cdefs_have_no_preprocessor_lines() {
    let cdefs = include_str!(concat!(env!("OUT_DIR"), "/wsserver_cdefs.lua"));
    assert!(cdefs.lines().all(|l| !l.trim_start().starts_with('#')));
    assert!(cdefs.contains("wss_mgr_poll"));
    assert!(cdefs.contains("WSS_EV_HTTP_MSG = 5"));
}
