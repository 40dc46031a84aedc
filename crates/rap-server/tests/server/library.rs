//! The photo library over HTTP: a scan only of the server's library folders and only for an
//! admin, then find with thumbnail URLs, and the thumbnails themselves.

use crate::common::*;

const RED: [u8; 3] = [200, 30, 30];
const BLUE: [u8; 3] = [30, 40, 210];

#[test]
fn an_admin_scans_a_library_folder_and_anyone_finds_in_it() {
    let photos = tempfile::tempdir().unwrap();
    let inside = photos.path().join("2026");
    std::fs::create_dir(&inside).unwrap();
    std::fs::write(inside.join("red.png"), photo(RED, 96, 80, 1)).unwrap();
    std::fs::write(inside.join("blue.png"), photo(BLUE, 96, 80, 2)).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let root = photos.path().to_path_buf();
    let s = Server::start_with(move |c| c.library_dirs = vec![root]);
    let c = client();
    let form = Multipart::new()
        .text("name", "Bo")
        .file("image", "bo.png", &photo(RED, 80, 96, 3));
    json(post_form(&c, &s.url("/v1/concepts"), None, form), 201);

    // Outside the library folders: refused, nothing indexed.
    let res = c
        .post(s.url("/v1/library/scan"))
        .json(&serde_json::json!({"folder": elsewhere.path()}))
        .send()
        .unwrap();
    error(res, 403, "permission_error", "library_dirs");

    let report = json(
        c.post(s.url("/v1/library/scan"))
            .json(&serde_json::json!({"folder": inside}))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(report["indexed"], 2, "{report}");

    let found = json(
        c.get(s.url("/v1/library/find?concept=bo")).send().unwrap(),
        200,
    );
    assert_eq!(found["total"], 1, "{found}");
    let hit = &found["photos"][0];
    assert!(hit["path"].as_str().unwrap().ends_with("red.png"));
    let thumb_url = hit["thumbnail"].as_str().unwrap();
    let res = c.get(s.url(thumb_url)).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let bytes = res.bytes().unwrap();
    let thumb = image::load_from_memory(&bytes).unwrap();
    assert!(thumb.width() <= 256 && thumb.width() > 0);
    // The second time it comes from the cache: the same bytes.
    let again = c.get(s.url(thumb_url)).send().unwrap().bytes().unwrap();
    assert_eq!(bytes, again);

    error(
        c.get(s.url("/v1/library/find?concept=nobody"))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "nobody",
    );
    error(
        c.get(s.url("/v1/library/photos/999/thumbnail"))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "999",
    );
}

#[test]
fn with_api_keys_only_an_admin_tenant_may_scan() {
    let photos = tempfile::tempdir().unwrap();
    let root = photos.path().to_path_buf();
    let (dir, engine) = Server::engine();
    let (user_key, _) = engine
        .create_api_key(&rap_core::Tenant::new("alice").unwrap())
        .unwrap();
    let (admin_key, _) = engine
        .create_api_key(&rap_core::Tenant::new("ops").unwrap())
        .unwrap();
    let s = Server::start_engine(dir, engine, move |c| {
        c.library_dirs = vec![root];
        c.admin_tenants = vec![rap_core::Tenant::new("ops").unwrap()];
    });
    let c = client();
    let scan = |key: &str| {
        c.post(s.url("/v1/library/scan"))
            .bearer_auth(key)
            .json(&serde_json::json!({"folder": photos.path()}))
            .send()
            .unwrap()
    };
    error(scan(&user_key), 403, "permission_error", "admin");
    let report = json(scan(&admin_key), 200);
    assert_eq!(report["found"], 0);
}
