//! Tenants and keys: with keys configured, every /v1 request needs a valid key and sees only
//! its key's tenant - tenant B can neither read, find, retrieve, change nor delete anything
//! of tenant A, even knowing A's names and image ids.

use crate::common::*;
use rap_core::Tenant;

const GREEN: [u8; 3] = [30, 200, 60];

#[test]
fn a_tenant_sees_and_touches_only_its_own_memory() {
    let (dir, engine) = Server::engine();
    let (key_a, _) = engine
        .create_api_key(&Tenant::new("alice").unwrap())
        .unwrap();
    let (key_b, info_b) = engine.create_api_key(&Tenant::new("bob").unwrap()).unwrap();
    let s = Server::start_engine(dir, engine.clone(), |_| {});
    let c = client();

    // No key, a wrong key, a malformed header: 401, JSON.
    error(
        c.get(s.url("/v1/concepts")).send().unwrap(),
        401,
        "authentication_error",
        "API key",
    );
    error(
        c.get(s.url("/v1/concepts"))
            .bearer_auth("rap_000000000000_nope")
            .send()
            .unwrap(),
        401,
        "authentication_error",
        "invalid",
    );
    error(
        c.get(s.url("/v1/concepts"))
            .header("authorization", "Basic eDp5")
            .send()
            .unwrap(),
        401,
        "authentication_error",
        "Bearer",
    );
    error(
        c.get(s.url("/v1/models")).send().unwrap(),
        401,
        "authentication_error",
        "API key",
    );
    // The page and the document stay public.
    assert_eq!(c.get(s.url("/")).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url("/openapi.json")).send().unwrap().status(), 200);

    // Alice remembers "rex".
    let photo_a = photo(GREEN, 80, 80, 1);
    let rex = json(
        post_form(
            &c,
            &s.url("/v1/concepts"),
            Some(&key_a),
            Multipart::new()
                .text("name", "rex")
                .text("info", "<rex> is Alice's secret.")
                .file("image", "r.png", &photo_a),
        ),
        201,
    );
    let image = rex["images"][0]["id"].as_str().unwrap().to_string();
    let get = |path: &str, key: &str| c.get(s.url(path)).bearer_auth(key).send().unwrap();

    // Bob cannot list, read, fetch the image, find by text or photo, edit, add to or delete.
    assert_eq!(
        json(get("/v1/concepts", &key_b), 200)["concepts"],
        serde_json::json!([])
    );
    error(
        get("/v1/concepts/rex", &key_b),
        404,
        "not_found_error",
        "rex",
    );
    error(
        get(&format!("/v1/images/{image}"), &key_b),
        404,
        "not_found_error",
        "image",
    );
    let found = json(
        post_form(
            &c,
            &s.url("/v1/retrieve"),
            Some(&key_b),
            Multipart::new()
                .file("image", "q.png", &photo(GREEN, 100, 90, 5))
                .text("text", "is <rex> here?")
                .text("threshold", "-1"),
        ),
        200,
    );
    assert_eq!(
        found["hits"],
        serde_json::json!([]),
        "bob found alice's concept: {found}"
    );
    error(
        c.patch(s.url("/v1/concepts/rex"))
            .bearer_auth(&key_b)
            .json(&serde_json::json!({"info": "mine"}))
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "rex",
    );
    error(
        post_form(
            &c,
            &s.url("/v1/concepts/rex/images"),
            Some(&key_b),
            Multipart::new().file("image", "x.png", &photo(GREEN, 64, 64, 2)),
        ),
        404,
        "not_found_error",
        "rex",
    );
    error(
        c.delete(s.url(&format!("/v1/concepts/rex/images/{image}")))
            .bearer_auth(&key_b)
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "rex",
    );
    error(
        c.delete(s.url("/v1/concepts/rex"))
            .bearer_auth(&key_b)
            .send()
            .unwrap(),
        404,
        "not_found_error",
        "rex",
    );
    // Chat: Bob's question about rex with Alice's photo gets none of Alice's concepts.
    let data_url = format!("data:image/png;base64,{}", b64(&photo_a));
    let chat = json(
        c.post(s.url("/v1/chat/completions"))
            .bearer_auth(&key_b)
            .json(&serde_json::json!({
                "model": "x", "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "Is <rex> in this photo?"},
                    {"type": "image_url", "image_url": {"url": data_url}}]}]
            }))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(chat["rap"]["concepts"], serde_json::json!([]), "{chat}");
    assert!(!chat.to_string().contains("secret"), "{chat}");
    // Bob may use the same name for his own concept; they stay separate.
    json(
        post_form(
            &c,
            &s.url("/v1/concepts"),
            Some(&key_b),
            Multipart::new()
                .text("name", "rex")
                .file("image", "b.png", &photo(GREEN, 70, 70, 3)),
        ),
        201,
    );

    // Alice still has everything, unchanged.
    let again = json(get("/v1/concepts/rex", &key_a), 200);
    assert_eq!(again["info"], "<rex> is Alice's secret.");
    assert_eq!(again["id"], rex["id"]);
    assert_eq!(
        get(&format!("/v1/images/{image}"), &key_a)
            .bytes()
            .unwrap()
            .as_ref(),
        photo_a.as_slice()
    );
    let chat = json(
        c.post(s.url("/v1/chat/completions"))
            .bearer_auth(&key_a)
            .json(&serde_json::json!({
                "messages": [{"role": "user", "content": [
                    {"type": "text", "text": "Who is this?"},
                    {"type": "image_url", "image_url": {"url": data_url}}]}]
            }))
            .send()
            .unwrap(),
        200,
    );
    assert_eq!(chat["rap"]["concepts"][0]["name"], "rex", "{chat}");

    // A revoked key stops working at once.
    engine.revoke_api_key(&info_b.id).unwrap();
    error(
        get("/v1/concepts", &key_b),
        401,
        "authentication_error",
        "revoked",
    );
    assert_eq!(
        json(get("/v1/concepts", &key_a), 200)["concepts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
