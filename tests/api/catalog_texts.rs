//! The property catalog's amenities and locale texts through HTTP: who writes them, who
//! reads them, uniqueness, filters, soft deletes and bad input.

use serde_json::{json, Value};

use crate::helpers::{call, delete, get, node_with_admin, patch, post, TestNode, TestUser};

const AMENITIES: &str = "/propertycatalog-api/v1/listingamenities";
const TEXTS: &str = "/propertycatalog-api/v1/listinglocaletexts";

async fn amenity(node: &TestNode, admin: &TestUser, name: &str) -> String {
    let (status, body) = post(
        node,
        AMENITIES,
        &admin.token,
        json!({"name": name, "iconUrl": "https://icons.example/x.svg"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["listingAmenity"]["id"].as_str().unwrap().to_owned()
}

fn names(list: &Value) -> Vec<String> {
    list["listingAmenities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The error shape every marketplace refusal has.
fn assert_error(body: &Value, status: u16, message: &str) {
    assert_eq!(body["result"], "ERR", "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(body["errCode"], status, "{body}");
    assert_eq!(body["message"], message, "{body}");
}

#[actix_web::test]
async fn amenities_are_kept_by_admins_and_read_by_everyone() {
    let (node, admin) = node_with_admin().await;
    let user = node.user().await;

    let (status, created) = post(
        &node,
        AMENITIES,
        &admin.token,
        json!({"name": "  Wifi ", "iconUrl": "https://icons.example/wifi.svg"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["statusCode"], 201);
    assert_eq!(created["dataName"], "listingAmenity");
    assert_eq!(created["action"], "create");
    let a = &created["listingAmenity"];
    let id = a["id"].as_str().unwrap().to_owned();
    let keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "_owner",
            "createdAt",
            "iconUrl",
            "id",
            "isActive",
            "name",
            "recordVersion",
            "updatedAt"
        ]
    );
    assert_eq!(a["name"], "Wifi", "the name is trimmed");
    assert_eq!(a["iconUrl"], "https://icons.example/wifi.svg");
    assert_eq!(a["isActive"], true);
    assert_eq!(a["recordVersion"], 1);
    assert_eq!(a["_owner"], admin.id.as_str());

    // Creating is for admins; so are changes.
    let (status, body) = post(&node, AMENITIES, &user.token, json!({"name": "Pool"})).await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body, 403, "errMsg_forbidden");
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        AMENITIES,
        None,
        Some(&json!({"name": "Pool"})),
    )
    .await;
    assert_eq!(status, 401);
    let one = format!("{AMENITIES}/{id}");
    let (status, _) = patch(&node, &one, &user.token, json!({"iconUrl": null})).await;
    assert_eq!(status, 403);
    let (status, _) = delete(&node, &one, &user.token).await;
    assert_eq!(status, 403);

    // Reading is public, with or without a token; a bad token is still refused.
    let (status, got) = get(&node, &one, None).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["listingAmenity"], *a);
    assert_eq!(got["userId"], Value::Null);
    let (status, got) = get(&node, &one, Some(&user.token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["userId"], user.id.as_str());
    let (status, _) = get(&node, &one, Some("not-a-token")).await;
    assert_eq!(status, 401);
    let (status, list) = get(&node, AMENITIES, None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["action"], "list");
    assert_eq!(names(&list), ["Wifi"]);
    assert_eq!(
        list["paging"],
        json!({"pageNumber": 1, "pageRowCount": 25, "totalRowCount": 1, "pageCount": 1})
    );
    assert_eq!(list["filters"], json!([]));
    assert_eq!(list["uiPermissions"], json!([]));

    // The icon changes; the name is fixed.
    let (status, updated) = patch(&node, &one, &admin.token, json!({"iconUrl": null})).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["action"], "update");
    assert_eq!(updated["listingAmenity"]["iconUrl"], Value::Null);
    assert_eq!(updated["listingAmenity"]["recordVersion"], 2);
    let (status, body) = patch(&node, &one, &admin.token, json!({"name": "WiFi 6"})).await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, 400, "errMsg_invalidRequestBody");

    // Delete: the last state, inactive; gone for everyone but admins.
    let (status, deleted) = delete(&node, &one, &admin.token).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["action"], "delete");
    assert_eq!(deleted["listingAmenity"]["isActive"], false);
    assert_eq!(deleted["listingAmenity"]["recordVersion"], 3);
    assert_eq!(deleted["listingAmenity"]["name"], "Wifi");
    let (status, body) = get(&node, &one, None).await;
    assert_eq!(status, 404);
    assert_error(&body, 404, "errMsg_listingAmenityNotFound");
    let (status, got) = get(&node, &one, Some(&admin.token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["listingAmenity"]["isActive"], false);
    let (status, _) = delete(&node, &one, &admin.token).await;
    assert_eq!(status, 404, "deleted once");
    let (status, _) = patch(&node, &one, &admin.token, json!({"iconUrl": "x"})).await;
    assert_eq!(status, 404, "a deleted amenity does not change");
    let (_, list) = get(&node, AMENITIES, Some(&admin.token)).await;
    assert_eq!(list["rowCount"], 0);
    let (status, list) = get(
        &node,
        &format!("{AMENITIES}?isActive=false"),
        Some(&admin.token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), ["Wifi"]);
    let (status, _) = get(
        &node,
        &format!("{AMENITIES}?isActive=false"),
        Some(&user.token),
    )
    .await;
    assert_eq!(status, 403, "only admins list deleted amenities");
    let (status, _) = get(&node, &format!("{AMENITIES}/nope"), None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn amenity_names_are_unique_among_active_ones_whatever_the_case() {
    let (node, admin) = node_with_admin().await;
    let id = amenity(&node, &admin, "Wifi").await;
    for twin in ["wifi", "WIFI", " Wifi  "] {
        let (status, body) = post(&node, AMENITIES, &admin.token, json!({"name": twin})).await;
        assert_eq!(status, 409, "{twin}: {body}");
        assert_error(&body, 409, "errMsg_listingAmenityAlreadyExists");
    }
    let (_, list) = get(&node, AMENITIES, None).await;
    assert_eq!(list["rowCount"], 1, "nothing half-made");
    let (status, _) = delete(&node, &format!("{AMENITIES}/{id}"), &admin.token).await;
    assert_eq!(status, 200);
    // The name is free again once its holder is deleted.
    let (status, body) = post(&node, AMENITIES, &admin.token, json!({"name": "WiFi"})).await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["listingAmenity"]["id"], id.as_str());
}

#[actix_web::test]
async fn amenity_lists_filter_by_part_of_the_name_and_page() {
    let (node, admin) = node_with_admin().await;
    for name in ["Pool", "Hot tub", "Wifi 100%", "Pool_table", "Rooftop pool"] {
        amenity(&node, &admin, name).await;
    }
    let (_, list) = get(&node, &format!("{AMENITIES}?name=POOL"), None).await;
    assert_eq!(names(&list), ["Pool", "Pool_table", "Rooftop pool"]);
    let (_, list) = get(&node, &format!("{AMENITIES}?name=%25"), None).await;
    assert_eq!(names(&list), ["Wifi 100%"], "% matches itself");
    let (_, list) = get(&node, &format!("{AMENITIES}?name=l_"), None).await;
    assert_eq!(names(&list), ["Pool_table"], "_ matches itself");
    let (_, list) = get(&node, &format!("{AMENITIES}?name=tub&name=wifi"), None).await;
    assert_eq!(names(&list), ["Hot tub", "Wifi 100%"]);
    let (_, list) = get(&node, &format!("{AMENITIES}?name=null"), None).await;
    assert_eq!(list["rowCount"], 0, "every amenity has a name");

    let (status, page) = get(
        &node,
        &format!("{AMENITIES}?pageRowCount=2&pageNumber=2"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(names(&page), ["Pool_table", "Rooftop pool"]);
    assert_eq!(
        page["paging"],
        json!({"pageNumber": 2, "pageRowCount": 2, "totalRowCount": 5, "pageCount": 3})
    );
    let (_, all) = get(&node, &format!("{AMENITIES}?pageNumber=0"), None).await;
    assert_eq!(all["rowCount"], 5);
    for bad in [
        "pageRowCount=0",
        "pageRowCount=101",
        "pageNumber=x",
        "color=red",
    ] {
        let (status, body) = get(&node, &format!("{AMENITIES}?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["result"], "ERR");
    }
}

#[actix_web::test]
async fn bad_amenity_input_is_400_and_changes_nothing() {
    let (node, admin) = node_with_admin().await;
    let id = amenity(&node, &admin, "Wifi").await;
    let long = "x".repeat(101);
    let long_url = format!("https://{}", "x".repeat(2048));
    for body in [
        json!({}),
        json!({"name": 7}),
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": long}),
        json!({"name": "Pool", "iconUrl": long_url}),
        json!({"name": "Pool", "iconUrl": ""}),
        json!({"name": "Pool", "isActive": false}),
        json!(["Pool"]),
    ] {
        let (status, answer) = post(&node, AMENITIES, &admin.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["result"], "ERR");
    }
    let response = node
        .http
        .post(node.url(AMENITIES))
        .bearer_auth(&admin.token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let one = format!("{AMENITIES}/{id}");
    for body in [
        json!({}),
        json!({"iconUrl": 3}),
        json!({"iconUrl": long_url}),
    ] {
        let (status, answer) = patch(&node, &one, &admin.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = get(&node, &format!("{AMENITIES}/{}", "x".repeat(65)), None).await;
    assert_eq!(status, 400, "an id that long is no id");
    let (_, list) = get(&node, AMENITIES, None).await;
    assert_eq!(names(&list), ["Wifi"]);
    let (_, got) = get(&node, &one, None).await;
    assert_eq!(got["listingAmenity"]["recordVersion"], 1);
}

/// A published listing of `host`, through the catalog's own route.
async fn listing(node: &TestNode, host: &TestUser) -> String {
    let (status, body) = post(
        node,
        "/propertycatalog-api/v1/listings",
        &host.token,
        json!({"title": "Loft by the river", "address": "1 River Road", "pricePerNight": 120,
               "description": "Bright and quiet", "propertyType": "apartment", "location": {},
               "currency": "USD", "approvalType": "manual", "isPublished": true}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["listing"]["id"].as_str().unwrap().to_owned()
}

fn text_body(listing_id: &str, language: &str) -> Value {
    json!({"listingId": listing_id, "languageCode": language,
           "localizedTitle": format!("Title in {language}"),
           "localizedDescription": format!("Description in {language}")})
}

#[actix_web::test]
async fn locale_texts_are_written_by_the_listing_host_or_an_admin() {
    let (node, admin) = node_with_admin().await;
    let (host, other) = (node.user().await, node.user().await);
    let listing_id = listing(&node, &host).await;

    let (status, created) = post(&node, TEXTS, &host.token, text_body(&listing_id, "en")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["dataName"], "listingLocaleText");
    let t = &created["listingLocaleText"];
    let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "_owner",
            "createdAt",
            "id",
            "isActive",
            "languageCode",
            "listingId",
            "localizedDescription",
            "localizedTitle",
            "recordVersion",
            "updatedAt"
        ]
    );
    assert_eq!(t["listingId"], listing_id.as_str());
    assert_eq!(t["languageCode"], "en");
    assert_eq!(t["localizedTitle"], "Title in en");
    assert_eq!(t["localizedDescription"], "Description in en");
    assert_eq!(t["isActive"], true);
    assert_eq!(t["recordVersion"], 1);
    assert_eq!(t["_owner"], host.id.as_str());
    let one = format!("{TEXTS}/{}", t["id"].as_str().unwrap());

    // Someone else is refused; an admin may write for the host.
    let (status, body) = post(&node, TEXTS, &other.token, text_body(&listing_id, "fr")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&node, TEXTS, &admin.token, text_body(&listing_id, "fr")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["listingLocaleText"]["_owner"], admin.id.as_str());
    // An unknown listing is 404; one text per listing and language, whatever the case.
    let (status, body) = post(
        &node,
        TEXTS,
        &host.token,
        text_body("no-such-listing", "de"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, 404, "errMsg_listingNotFound");
    let (status, body) = post(&node, TEXTS, &host.token, text_body(&listing_id, "EN")).await;
    assert_eq!(status, 409, "{body}");
    assert_error(&body, 409, "errMsg_listingLocaleTextAlreadyExists");

    // Reading is public.
    let (status, got) = get(&node, &one, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["listingLocaleText"], *t);

    // Changes: title and description, by the host or an admin.
    let (status, body) = patch(&node, &one, &other.token, json!({"localizedTitle": "Mine"})).await;
    assert_eq!(status, 403, "{body}");
    let (status, updated) = patch(
        &node,
        &one,
        &host.token,
        json!({"localizedTitle": "Riverside loft"}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["listingLocaleText"]["localizedTitle"],
        "Riverside loft"
    );
    assert_eq!(
        updated["listingLocaleText"]["localizedDescription"],
        "Description in en"
    );
    assert_eq!(updated["listingLocaleText"]["recordVersion"], 2);
    let (status, updated) = patch(
        &node,
        &one,
        &admin.token,
        json!({"localizedDescription": "Checked by an admin"}),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["listingLocaleText"]["localizedTitle"],
        "Riverside loft"
    );
    for fixed in [
        json!({"languageCode": "de"}),
        json!({"listingId": listing_id}),
    ] {
        let (status, body) = patch(&node, &one, &host.token, fixed.clone()).await;
        assert_eq!(status, 400, "{fixed}: {body}");
    }

    // Delete: the host or an admin; then the language is free again.
    let (status, _) = delete(&node, &one, &other.token).await;
    assert_eq!(status, 403);
    let (status, deleted) = delete(&node, &one, &host.token).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["listingLocaleText"]["isActive"], false);
    assert_eq!(
        deleted["listingLocaleText"]["localizedTitle"],
        "Riverside loft"
    );
    let (status, _) = get(&node, &one, None).await;
    assert_eq!(status, 404);
    let (status, got) = get(&node, &one, Some(&admin.token)).await;
    assert_eq!(status, 200);
    assert_eq!(got["listingLocaleText"]["isActive"], false);
    let (status, _) = patch(&node, &one, &host.token, json!({"localizedTitle": "x"})).await;
    assert_eq!(status, 404);
    let (status, again) = post(&node, TEXTS, &host.token, text_body(&listing_id, "en")).await;
    assert_eq!(status, 201, "{again}");
}

#[actix_web::test]
async fn locale_text_lists_filter_by_listing_and_language() {
    let (node, _admin) = node_with_admin().await;
    let host = node.user().await;
    let (first, second) = (listing(&node, &host).await, listing(&node, &host).await);
    for (listing_id, language) in [
        (&first, "en"),
        (&first, "pt-BR"),
        (&first, "pt-PT"),
        (&second, "en-GB"),
    ] {
        let (status, body) = post(&node, TEXTS, &host.token, text_body(listing_id, language)).await;
        assert_eq!(status, 201, "{body}");
    }
    let languages = |list: &Value| -> Vec<String> {
        list["listingLocaleTexts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["languageCode"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, list) = get(&node, &format!("{TEXTS}?listingId={first}"), None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["dataName"], "listingLocaleTexts");
    assert_eq!(languages(&list), ["en", "pt-BR", "pt-PT"]);
    let (_, list) = get(&node, &format!("{TEXTS}?languageCode=PT"), None).await;
    assert_eq!(languages(&list), ["pt-BR", "pt-PT"]);
    let (_, list) = get(&node, &format!("{TEXTS}?languageCode=en"), None).await;
    assert_eq!(list["rowCount"], 2);
    let (_, list) = get(
        &node,
        &format!("{TEXTS}?languageCode=en&listingId={second}"),
        None,
    )
    .await;
    assert_eq!(languages(&list), ["en-GB"]);
    let (_, list) = get(
        &node,
        &format!("{TEXTS}?listingId={first}&listingId={second}&pageRowCount=3"),
        None,
    )
    .await;
    assert_eq!(list["rowCount"], 3);
    assert_eq!(list["paging"]["totalRowCount"], 4);
    assert_eq!(list["paging"]["pageCount"], 2);
}

#[actix_web::test]
async fn bad_locale_text_input_is_400() {
    let (node, _admin) = node_with_admin().await;
    let host = node.user().await;
    let listing_id = listing(&node, &host).await;
    let mut bodies = vec![
        json!({}),
        json!({"listingId": listing_id, "languageCode": "en", "localizedTitle": "t"}),
        text_body(&listing_id, "e"),
        text_body(&listing_id, "english!"),
        text_body(&listing_id, "en-"),
        text_body(&listing_id, &format!("en-{}", "x".repeat(40))),
    ];
    let mut long_title = text_body(&listing_id, "en");
    long_title["localizedTitle"] = json!("t".repeat(201));
    bodies.push(long_title);
    let mut blank = text_body(&listing_id, "en");
    blank["localizedDescription"] = json!("  ");
    bodies.push(blank);
    let mut extra = text_body(&listing_id, "en");
    extra["isActive"] = json!(true);
    bodies.push(extra);
    let mut wrong_type = text_body(&listing_id, "en");
    wrong_type["localizedTitle"] = json!(["t"]);
    bodies.push(wrong_type);
    for body in bodies {
        let (status, answer) = post(&node, TEXTS, &host.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["result"], "ERR");
    }
    let (_, list) = get(&node, TEXTS, None).await;
    assert_eq!(list["rowCount"], 0, "nothing was stored");
    let (status, created) = post(&node, TEXTS, &host.token, text_body(&listing_id, "en")).await;
    assert_eq!(status, 201);
    let one = format!(
        "{TEXTS}/{}",
        created["listingLocaleText"]["id"].as_str().unwrap()
    );
    for body in [
        json!({}),
        json!({"localizedTitle": ""}),
        json!({"localizedDescription": "d".repeat(10_001)}),
    ] {
        let (status, answer) = patch(&node, &one, &host.token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    let (status, _) = call(
        &node,
        reqwest::Method::POST,
        TEXTS,
        None,
        Some(&text_body(&listing_id, "de")),
    )
    .await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn texts_of_listings_the_public_does_not_see_are_hidden_from_it() {
    let (node, admin) = node_with_admin().await;
    let (host, other) = (node.user().await, node.user().await);
    let (shown, unpublished, deleted) = (
        listing(&node, &host).await,
        listing(&node, &host).await,
        listing(&node, &host).await,
    );
    let mut texts = Vec::new();
    for listing_id in [&shown, &unpublished, &deleted] {
        let (status, body) = post(&node, TEXTS, &host.token, text_body(listing_id, "en")).await;
        assert_eq!(status, 201, "{body}");
        texts.push(format!(
            "{TEXTS}/{}",
            body["listingLocaleText"]["id"].as_str().unwrap()
        ));
    }
    let (status, body) = patch(
        &node,
        &format!("/propertycatalog-api/v1/listings/{unpublished}"),
        &host.token,
        json!({"isPublished": false}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = delete(
        &node,
        &format!("/propertycatalog-api/v1/listings/{deleted}"),
        &host.token,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The public (and other users) see the shown listing's text only.
    for token in [None, Some(other.token.as_str())] {
        let (_, list) = get(&node, TEXTS, token).await;
        assert_eq!(list["rowCount"], 1, "{list}");
        assert_eq!(list["listingLocaleTexts"][0]["listingId"], shown.as_str());
        let (status, _) = get(&node, &texts[0], token).await;
        assert_eq!(status, 200);
        for hidden in &texts[1..] {
            let (status, body) = get(&node, hidden, token).await;
            assert_eq!(status, 404, "{body}");
            assert_error(&body, 404, "errMsg_listingLocaleTextNotFound");
        }
    }
    // The host and admins see all three.
    for token in [&host.token, &admin.token] {
        let (_, list) = get(&node, TEXTS, Some(token)).await;
        assert_eq!(list["rowCount"], 3, "{list}");
        for text in &texts {
            let (status, _) = get(&node, text, Some(token)).await;
            assert_eq!(status, 200);
        }
    }

    // A deleted listing takes no new text and no change; its texts can still be deleted.
    let (status, body) = post(&node, TEXTS, &host.token, text_body(&deleted, "fr")).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, 404, "errMsg_listingNotFound");
    let (status, _) = patch(
        &node,
        &texts[2],
        &host.token,
        json!({"localizedTitle": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = delete(&node, &texts[2], &host.token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listingLocaleText"]["isActive"], false);
    // An unpublished listing is still its host's to write.
    let (status, body) = patch(
        &node,
        &texts[1],
        &host.token,
        json!({"localizedTitle": "Coming soon"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn every_amenity_and_locale_text_route_is_in_the_openapi_document() {
    let node = crate::helpers::spawn_node().await;
    let doc: Value = node.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, methods) in [
        (AMENITIES.to_owned(), &["get", "post"][..]),
        (
            format!("{AMENITIES}/{{listingAmenityId}}"),
            &["get", "patch", "delete"],
        ),
        (TEXTS.to_owned(), &["get", "post"]),
        (
            format!("{TEXTS}/{{listingLocaleTextId}}"),
            &["get", "patch", "delete"],
        ),
    ] {
        for method in methods {
            assert!(
                paths[path.as_str()][method].is_object(),
                "{method} {path} is not documented"
            );
        }
    }
}
