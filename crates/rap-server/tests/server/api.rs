//! The REST API against a real server on 127.0.0.1 and a real store: concepts and images,
//! retrieval, the OpenAPI document, and bad input (which always gets a JSON error and never
//! changes the memory).

use crate::common::*;

const RED: [u8; 3] = [200, 30, 30];
const BLUE: [u8; 3] = [30, 40, 210];

#[test]
fn concepts_and_images_round_trip() {
    let s = Server::start();
    let c = client();
    let red1 = photo(RED, 96, 80, 1);
    let red2 = photo(RED, 80, 96, 2);
    let form = Multipart::new()
        .text("name", "Bo")
        .text("info", "<Bo> is a red fox plush.")
        .text("category", "toy")
        .text("alias", "foxy")
        .text("alias", "Fox Plush")
        .file("image", "bo1.png", &red1)
        .file("image", "bo2.png", &red2);
    let res = post_form(&c, &s.url("/v1/concepts"), None, form);
    assert_eq!(res.headers()["location"], "/v1/concepts/Bo");
    let bo = json(res, 201);
    assert_eq!(bo["name"], "Bo");
    assert_eq!(bo["aliases"], serde_json::json!(["Fox Plush", "foxy"]));
    assert_eq!(bo["images"].as_array().unwrap().len(), 2);
    let image_id = bo["images"][0]["id"].as_str().unwrap().to_string();

    // By alias, any case, brackets; the list.
    let got = json(c.get(s.url("/v1/concepts/%3CFOXY%3E")).send().unwrap(), 200);
    assert_eq!(got["id"], bo["id"]);
    let list = json(c.get(s.url("/v1/concepts")).send().unwrap(), 200);
    assert_eq!(list["concepts"].as_array().unwrap().len(), 1);

    // The image as stored.
    let res = c
        .get(s.url(&format!("/v1/images/{image_id}")))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.bytes().unwrap().as_ref(), red1.as_slice());

    // Edit: rename, info, aliases in one transaction.
    let patched = json(
        c.patch(s.url("/v1/concepts/bo"))
            .json(&serde_json::json!({"name": "Bobo", "info": "<Bobo> is red.", "remove_aliases": ["foxy"]}))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(patched["name"], "Bobo");
    assert_eq!(patched["aliases"], serde_json::json!(["Fox Plush"]));
    error(
        c.get(s.url("/v1/concepts/bo")).send().unwrap(),
        404,
        "not_found_error",
        "bo",
    );

    // Add a photo, remove one.
    let res = post_form(
        &c,
        &s.url("/v1/concepts/bobo/images"),
        None,
        Multipart::new().file("image", "bo3.png", &photo(RED, 64, 64, 3)),
    );
    assert_eq!(json(res, 201)["images"].as_array().unwrap().len(), 3);
    let after = json(
        c.delete(s.url(&format!("/v1/concepts/bobo/images/{image_id}")))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(after["images"].as_array().unwrap().len(), 2);
    error(
        c.get(s.url(&format!("/v1/images/{image_id}")))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "image",
    );

    // Delete.
    let deleted = json(c.delete(s.url("/v1/concepts/Bobo")).send().unwrap(), 200);
    assert_eq!(deleted["deleted"]["name"], "Bobo");
    let list = json(c.get(s.url("/v1/concepts")).send().unwrap(), 200);
    assert_eq!(list["concepts"], serde_json::json!([]));
    error(
        c.delete(s.url("/v1/concepts/Bobo")).send().unwrap(),
        404,
        "not_found_error",
        "Bobo",
    );
}

#[test]
fn bad_input_gets_a_json_error_and_changes_nothing() {
    let s = Server::start_with(|cfg| cfg.max_body_bytes = 512 * 1024);
    let c = client();
    let good = photo(BLUE, 64, 64, 1);
    let made = json(
        post_form(
            &c,
            &s.url("/v1/concepts"),
            None,
            Multipart::new()
                .text("name", "dug")
                .file("image", "d.png", &good),
        ),
        201,
    );
    let before = json(c.get(s.url("/v1/concepts")).send().unwrap(), 200);
    let stats = s.engine.stats(&rap_core::Tenant::default()).unwrap();

    // A corrupt image among good ones: named, and nothing stored.
    let mut corrupt = photo(RED, 64, 64, 2);
    corrupt.truncate(corrupt.len() / 2);
    let res = post_form(
        &c,
        &s.url("/v1/concepts"),
        None,
        Multipart::new()
            .text("name", "bo")
            .file("image", "ok.png", &photo(RED, 64, 64, 3))
            .file("image", "broken.png", &corrupt),
    );
    error(res, 400, "invalid_request_error", "image 2 (broken.png)");
    // Not an image at all; a decompression bomb; no image; no name; a bad name; a taken name.
    let cases: Vec<(Multipart, u16, &str, &str)> = vec![
        (
            Multipart::new()
                .text("name", "bo")
                .file("image", "a.txt", b"hello"),
            400,
            "invalid_request_error",
            "image 1 (a.txt)",
        ),
        (
            Multipart::new().text("name", "bo").file(
                "image",
                "bomb.png",
                &png_bomb(60_000, 60_000),
            ),
            400,
            "invalid_request_error",
            "bomb.png",
        ),
        (
            Multipart::new().text("name", "bo"),
            400,
            "invalid_request_error",
            "at least one reference photo",
        ),
        (
            Multipart::new().file("image", "a.png", &good),
            400,
            "invalid_request_error",
            "\"name\" is required",
        ),
        (
            Multipart::new()
                .text("name", "a<b>")
                .file("image", "a.png", &good),
            400,
            "invalid_request_error",
            "invalid name",
        ),
        (
            Multipart::new()
                .text("name", "DUG")
                .file("image", "a.png", &good),
            409,
            "conflict_error",
            "dug",
        ),
        (
            Multipart::new()
                .text("name", "x")
                .text("colour", "red")
                .file("image", "a.png", &good),
            400,
            "invalid_request_error",
            "unknown field \"colour\"",
        ),
    ];
    for (form, status, kind, want) in cases {
        error(
            post_form(&c, &s.url("/v1/concepts"), None, form),
            status,
            kind,
            want,
        );
    }
    // Malformed multipart, wrong content type, too large.
    let res = c
        .post(s.url("/v1/concepts"))
        .header("content-type", "multipart/form-data; boundary=zzz")
        .body("--zzz\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nbo\r\n--zz")
        .send()
        .unwrap();
    error(res, 400, "invalid_request_error", "multipart");
    let res = c
        .post(s.url("/v1/concepts"))
        .json(&serde_json::json!({"name": "bo"}))
        .send()
        .unwrap();
    error(res, 400, "invalid_request_error", "multipart/form-data");
    let big = vec![7u8; 600 * 1024];
    let res = post_form(
        &c,
        &s.url("/v1/concepts"),
        None,
        Multipart::new()
            .text("name", "bo")
            .file("image", "big.png", &big),
    );
    error(res, 413, "request_too_large", "");

    // PATCH: malformed JSON, unknown field, unknown concept, taken name.
    let res = c
        .patch(s.url("/v1/concepts/dug"))
        .header("content-type", "application/json")
        .body("{\"info\": ")
        .send()
        .unwrap();
    error(res, 400, "invalid_request_error", "request body");
    let res = c
        .patch(s.url("/v1/concepts/dug"))
        .json(&serde_json::json!({"colour": "red"}))
        .send()
        .unwrap();
    error(res, 400, "invalid_request_error", "colour");
    let res = c
        .patch(s.url("/v1/concepts/rex"))
        .json(&serde_json::json!({"info": "x"}))
        .send()
        .unwrap();
    error(res, 404, "not_found_error", "rex");

    // Image ids: path tricks, prefixes and other junk are refused before any lookup.
    for bad in [
        "..%2F..%2Fmemory.sqlite",
        "abcdef12",
        &"g".repeat(64),
        "%00",
    ] {
        error(
            c.get(s.url(&format!("/v1/images/{bad}"))).send().unwrap(),
            400,
            "invalid_request_error",
            "invalid image id",
        );
    }
    error(
        c.get(s.url(&format!("/v1/images/{}", "0".repeat(64))))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "image",
    );
    // The last image cannot go.
    let only = made["images"][0]["id"].as_str().unwrap();
    let res = c
        .delete(s.url(&format!("/v1/concepts/dug/images/{only}")))
        .send()
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let v: serde_json::Value = res.json().unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("image"),
        "{v}"
    );
    // Adding a broken image to an existing concept, or to an unknown one.
    error(
        post_form(
            &c,
            &s.url("/v1/concepts/dug/images"),
            None,
            Multipart::new().file("image", "b.png", &corrupt),
        ),
        400,
        "invalid_request_error",
        "b.png",
    );
    error(
        post_form(
            &c,
            &s.url("/v1/concepts/rex/images"),
            None,
            Multipart::new().file("image", "a.png", &good),
        ),
        404,
        "not_found_error",
        "rex",
    );

    // Unknown endpoints and methods are JSON too.
    error(
        c.get(s.url("/v1/nothing")).send().unwrap(),
        404,
        "not_found_error",
        "/v1/nothing",
    );
    error(
        c.put(s.url("/v1/concepts")).send().unwrap(),
        405,
        "method_not_allowed",
        "PUT",
    );

    // Nothing changed.
    assert_eq!(
        json(c.get(s.url("/v1/concepts")).send().unwrap(), 200),
        before
    );
    assert_eq!(s.engine.stats(&rap_core::Tenant::default()).unwrap(), stats);
}

#[test]
fn retrieve_finds_a_concept_in_a_new_photo_and_by_name() {
    let s = Server::start();
    let c = client();
    for (name, color) in [("bo", RED), ("dug", BLUE)] {
        json(
            post_form(
                &c,
                &s.url("/v1/concepts"),
                None,
                Multipart::new().text("name", name).file(
                    "image",
                    "a.png",
                    &photo(color, 90, 90, 1),
                ),
            ),
            201,
        );
    }
    // Another photo of bo (other size, other texture).
    let v = json(
        post_form(
            &c,
            &s.url("/v1/retrieve"),
            None,
            Multipart::new()
                .file("image", "q.png", &photo(RED, 120, 100, 9))
                .text("top_k", "1"),
        ),
        200,
    );
    let hits = v["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{v}");
    assert_eq!(hits[0]["name"], "bo");
    assert_eq!(hits[0]["via"], "image");
    assert!(hits[0]["score"].as_f64().unwrap() > 0.9, "{v}");
    assert_eq!(hits[0]["box"].as_array().unwrap().len(), 4);
    // By name in the text; with the photo, the image hit comes after the mention.
    let v = json(
        post_form(
            &c,
            &s.url("/v1/retrieve"),
            None,
            Multipart::new()
                .file("image", "q.png", &photo(RED, 120, 100, 9))
                .text("text", "is <dug> with him?"),
        ),
        200,
    );
    let names: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dug", "bo"]);
    assert_eq!(v["hits"][0]["via"], "text");
    // Bad requests.
    error(
        post_form(&c, &s.url("/v1/retrieve"), None, Multipart::new()),
        400,
        "invalid_request_error",
        "\"image\", a \"text\"",
    );
    error(
        post_form(
            &c,
            &s.url("/v1/retrieve"),
            None,
            Multipart::new().file("image", "x.jpg", b"\xff\xd8\xffjunk"),
        ),
        400,
        "invalid_request_error",
        "image",
    );
    error(
        post_form(
            &c,
            &s.url("/v1/retrieve"),
            None,
            Multipart::new().text("text", "bo").text("top_k", "lots"),
        ),
        400,
        "invalid_request_error",
        "top_k",
    );
}

#[test]
fn openapi_document_describes_the_api() {
    let s = Server::start();
    let c = client();
    let doc = json(c.get(s.url("/openapi.json")).send().unwrap(), 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/v1/concepts", "get"),
        ("/v1/concepts", "post"),
        ("/v1/concepts/{name}", "get"),
        ("/v1/concepts/{name}", "patch"),
        ("/v1/concepts/{name}", "delete"),
        ("/v1/concepts/{name}/images", "post"),
        ("/v1/concepts/{name}/images/{image_id}", "delete"),
        ("/v1/images/{image_id}", "get"),
        ("/v1/retrieve", "post"),
        ("/v1/models", "get"),
        ("/v1/chat/completions", "post"),
    ] {
        assert!(
            doc["paths"][path][method]["responses"].is_object(),
            "{method} {path}"
        );
    }
    // Every documented operation is served (none answers 404/405 for its method).
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let url = s.url(
            &path
                .replace("{name}", "nobody")
                .replace("{image_id}", &"0".repeat(64)),
        );
        for method in methods.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = c.request(m, &url).send().unwrap().status().as_u16();
            assert!(
                status != 405 && !(status == 404 && path == "/v1/concepts"),
                "{method} {path}: {status}"
            );
        }
    }
    // The page and its assets are served from the binary.
    let page = c.get(s.url("/")).send().unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().unwrap().contains("app.js"));
    assert_eq!(c.get(s.url("/app.js")).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url("/style.css")).send().unwrap().status(), 200);
    // Every script and stylesheet the page names is served (the page works offline).
    let page = c.get(s.url("/")).send().unwrap().text().unwrap();
    let assets: Vec<&str> = page
        .split(['"', '\''])
        .filter(|p| p.starts_with('/') && (p.ends_with(".js") || p.ends_with(".css")))
        .collect();
    assert!(assets.contains(&"/vendor/markdown-it.min.js"), "{assets:?}");
    for asset in assets {
        assert_eq!(c.get(s.url(asset)).send().unwrap().status(), 200, "{asset}");
    }
    let licence = c
        .get(s.url("/vendor/markdown-it.LICENSE.txt"))
        .send()
        .unwrap();
    assert!(licence.text().unwrap().contains("Vitaly Puzrin"));
}

#[test]
fn negatives_are_added_by_box_listed_and_removed() {
    let s = Server::start();
    let c = client();
    let form = Multipart::new()
        .text("name", "Bo")
        .file("image", "bo.png", &photo(RED, 64, 64, 1));
    json(post_form(&c, &s.url("/v1/concepts"), None, form), 201);
    let url = s.url("/v1/concepts/bo/negatives");
    let look_alike = photo(RED, 120, 90, 7);

    // A box of the photo becomes the negative: stored as that crop.
    let form = Multipart::new()
        .text("box", "10,20,70,80")
        .file("image", "rex.png", &look_alike);
    let bo = json(post_form(&c, &url, None, form), 201);
    let negatives = bo["negatives"].as_array().unwrap();
    assert_eq!(negatives.len(), 1, "{bo}");
    assert_eq!(
        (
            negatives[0]["width"].as_u64(),
            negatives[0]["height"].as_u64()
        ),
        (Some(60), Some(60))
    );
    assert_eq!(
        bo["images"].as_array().unwrap().len(),
        1,
        "references untouched"
    );

    // Bad input: named, nothing changes.
    let form = Multipart::new()
        .text("box", "10,20,5,80")
        .file("image", "rex.png", &look_alike);
    error(
        post_form(&c, &url, None, form),
        400,
        "invalid_request_error",
        "\"box\"",
    );
    let form = Multipart::new().text("box", "0,0,10,10");
    error(
        post_form(&c, &url, None, form),
        400,
        "invalid_request_error",
        "exactly one file",
    );
    let form =
        Multipart::new()
            .text("box", "500,500,600,600")
            .file("image", "rex.png", &look_alike);
    error(
        post_form(&c, &url, None, form),
        400,
        "invalid_request_error",
        "no pixels inside",
    );
    let form = Multipart::new().file("image", "rex.png", &look_alike);
    error(
        post_form(&c, &s.url("/v1/concepts/nobody/negatives"), None, form),
        404,
        "not_found_error",
        "nobody",
    );
    let got = json(c.get(s.url("/v1/concepts/bo")).send().unwrap(), 200);
    assert_eq!(got["negatives"].as_array().unwrap().len(), 1);

    // Removed by id.
    let id = negatives[0]["id"].as_str().unwrap();
    let bo = json(
        c.delete(s.url(&format!("/v1/concepts/bo/negatives/{id}")))
            .send()
            .unwrap(),
        200,
    );
    assert!(bo.get("negatives").is_none(), "{bo}");
    error(
        c.delete(s.url(&format!("/v1/concepts/bo/negatives/{id}")))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "negative example",
    );
}
