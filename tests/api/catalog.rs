//! Listings and listing calendars through `/propertycatalog-api`: the documented shapes, the
//! filters, who may change what, and every kind of bad input answered in the dialect's
//! error shape with nothing applied.

use reqwest::Method;
use serde_json::{json, Value};

use crate::booking::{booked, day, listing};
use crate::helpers::{call, node_with_admin, spawn_node, TestNode, TestUser};

fn new_listing() -> Value {
    json!({
        "title": "Garden studio", "address": "12 Elm Street", "pricePerNight": 42.5,
        "description": "Quiet", "propertyType": "Studio", "location": {"lat": 1.5, "lng": 2.5},
        "currency": "usd", "approvalType": "manual", "isPublished": true,
        "photos": ["a.jpg", "b.jpg"], "languagesSupported": ["en", "pt"], "minStay": 1,
        "maxStay": 30, "cityTaxPercent": 10, "houseRules": "No parties",
        "bookingPolicies": {"checkInAfter": "15:00"}, "cancellationPolicy": {"kind": "flexible"},
    })
}

async fn create(node: &TestNode, host: &TestUser, body: &Value) -> (u16, Value) {
    call(
        node,
        Method::POST,
        "/propertycatalog-api/v1/listings",
        Some(&host.token),
        Some(body),
    )
    .await
}

#[actix_web::test]
async fn a_listing_is_created_read_changed_and_soft_deleted_by_its_host() {
    let (node, admin) = node_with_admin().await;
    let (host, other) = (node.user().await, node.user().await);
    let (status, body) = create(&node, &host, &new_listing()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["statusCode"], 201);
    assert_eq!(body["dataName"], "listing");
    let l = &body["listing"];
    assert_eq!(l["hostId"], json!(host.id));
    assert_eq!(l["_owner"], json!(host.id));
    assert_eq!(l["propertyType"], "studio");
    assert_eq!(l["propertyType_idx"], 6);
    assert_eq!(l["approvalType_idx"], 1);
    assert_eq!(l["currency"], "USD");
    assert_eq!(l["pricePerNight"], json!(42.5));
    assert_eq!(l["cityTaxPercent"], json!(10));
    assert_eq!(l["isActive"], true);
    assert_eq!(l["recordVersion"], 1);
    assert!(
        l.get("amenities").is_none(),
        "create answers the pure object"
    );
    let id = l["id"].as_str().unwrap().to_owned();
    let path = format!("/propertycatalog-api/v1/listings/{id}");

    // Public to read, with its joins.
    let (status, body) = call(&node, Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listing"]["amenities"], json!([]));
    assert_eq!(body["listing"]["reviews"], json!([]));
    assert_eq!(body["listing"]["rezervations"], json!([]));

    // Only the host or an admin changes it; hostId is not changeable.
    let (status, _) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&other.token),
        Some(&json!({"title": "Mine now"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&host.token),
        Some(&json!({"hostId": other.id})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, body) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&host.token),
        Some(&json!({"title": "Garden studio II", "pricePerNight": 50, "mainPhoto": "m.jpg"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listing"]["title"], "Garden studio II");
    assert_eq!(body["listing"]["pricePerNight"], json!(50));
    assert_eq!(body["listing"]["recordVersion"], 2);
    let (status, body) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&admin.token),
        Some(&json!({"mainPhoto": null, "isPublished": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listing"]["mainPhoto"], Value::Null);

    // Unpublished: hidden from the public, visible to its host.
    let (status, _) = call(&node, Method::GET, &path, None, None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&node, Method::GET, &path, Some(&other.token), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(&node, Method::GET, &path, Some(&host.token), None).await;
    assert_eq!(status, 200);

    // Soft delete: the last state, then gone for everyone but its host and admins.
    let (status, _) = call(&node, Method::DELETE, &path, Some(&other.token), None).await;
    assert_eq!(status, 403);
    let (status, body) = call(&node, Method::DELETE, &path, Some(&host.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listing"]["isActive"], false);
    assert_eq!(body["listing"]["title"], "Garden studio II");
    let (status, _) = call(
        &node,
        Method::PATCH,
        &path,
        Some(&host.token),
        Some(&json!({"title": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&node, Method::DELETE, &path, Some(&host.token), None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn bad_listings_are_refused_in_the_dialects_error_shape() {
    let node = spawn_node().await;
    let host = node.user().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"propertyType": "castle"}),
            "errMsg_propertyTypeIsNotValid",
        ),
        (
            json!({"approvalType": "maybe"}),
            "errMsg_approvalTypeIsNotValid",
        ),
        (json!({"currency": "XYZ"}), "errMsg_currencyIsNotValid"),
        (
            json!({"pricePerNight": 10.001}),
            "errMsg_pricePerNightIsNotValid",
        ),
        (
            json!({"pricePerNight": -5}),
            "errMsg_pricePerNightIsNotValid",
        ),
        (
            json!({"pricePerNight": 0}),
            "errMsg_pricePerNightIsNotValid",
        ),
        (json!({"location": "downtown"}), "errMsg_locationIsNotValid"),
        (json!({"title": ""}), "errMsg_titleIsNotValid"),
        (json!({"title": "x".repeat(201)}), "errMsg_titleIsNotValid"),
        (
            json!({"minStay": 10, "maxStay": 5}),
            "errMsg_minStayIsNotValid",
        ),
        (json!({"maxStay": 0}), "errMsg_maxStayIsNotValid"),
        (
            json!({"cityTaxPercent": 150}),
            "errMsg_cityTaxPercentIsNotValid",
        ),
        (
            json!({"amenityIds": ["no-such-amenity"]}),
            "errMsg_amenityIdsIsNotValid",
        ),
        (json!({"photos": vec!["p"; 51]}), "errMsg_photosIsNotValid"),
        (json!({"hostId": "someone-else"}), "errMsg_forbidden"),
    ];
    for (change, code) in cases {
        let mut body = new_listing();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, answer) = create(&node, &host, &body).await;
        let expected = if code == "errMsg_forbidden" { 403 } else { 400 };
        assert_eq!(status, expected, "{change}: {answer}");
        assert_eq!(answer["message"], code, "{change}: {answer}");
        assert_eq!(answer["result"], "ERR");
    }
    // Wrong types, unknown fields, missing fields, malformed JSON: 400, nothing created.
    for body in [
        json!({"pricePerNight": "42"}),
        json!({"isPublished": "yes"}),
        json!({"colour": "blue"}),
        json!({"photos": "a.jpg"}),
    ] {
        let mut full = new_listing();
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        let (status, answer) = create(&node, &host, &full).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["result"], "ERR");
    }
    let mut missing = new_listing();
    missing.as_object_mut().unwrap().remove("address");
    assert_eq!(create(&node, &host, &missing).await.0, 400);
    let response = node
        .http
        .post(node.url("/propertycatalog-api/v1/listings"))
        .bearer_auth(&host.token)
        .header("content-type", "application/json")
        .body("{\"title\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let huge = json!({"description": "x".repeat(200_000)});
    let mut full = new_listing();
    full["description"] = huge["description"].clone();
    assert!(create(&node, &host, &full).await.0 >= 400);
    let (_, body) = call(
        &node,
        Method::GET,
        "/propertycatalog-api/v1/listings?pageNumber=0",
        None,
        None,
    )
    .await;
    assert_eq!(body["listings"], json!([]), "nothing was created");
    assert_eq!(
        call(
            &node,
            Method::POST,
            "/propertycatalog-api/v1/listings",
            None,
            Some(&new_listing())
        )
        .await
        .0,
        401
    );
}

#[actix_web::test]
async fn listings_filter_by_the_documented_fields() {
    let node = spawn_node().await;
    let (alice, bob) = (node.user().await, node.user().await);
    let mut ids = Vec::new();
    for (host, title, price, kind, currency, published) in [
        (&alice, "Harbour loft", 80.0, "loft", "USD", true),
        (&alice, "Hill house", 200.0, "house", "EUR", true),
        (&bob, "Tiny_room 100%", 35.0, "room", "USD", true),
        (&bob, "Secret villa", 900.0, "villa", "USD", false),
    ] {
        let mut body = new_listing();
        body["title"] = json!(title);
        body["pricePerNight"] = json!(price);
        body["propertyType"] = json!(kind);
        body["currency"] = json!(currency);
        body["isPublished"] = json!(published);
        let (status, answer) = create(&node, host, &body).await;
        assert_eq!(status, 201, "{answer}");
        ids.push(answer["listing"]["id"].as_str().unwrap().to_owned());
    }
    let titles = |body: &Value| -> Vec<String> {
        let mut t: Vec<String> = body["listings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["title"].as_str().unwrap().to_owned())
            .collect();
        t.sort();
        t
    };
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("title=HARBOUR", vec!["Harbour loft"]),
        ("title=_room", vec!["Tiny_room 100%"]),
        ("title=100%25", vec!["Tiny_room 100%"]),
        (
            "title=o&title=h",
            vec!["Harbour loft", "Hill house", "Tiny_room 100%"],
        ),
        (
            "pricePerNight=$lt-100",
            vec!["Harbour loft", "Tiny_room 100%"],
        ),
        ("pricePerNight=$gte-200", vec!["Hill house"]),
        (
            "pricePerNight=$btw-30-90",
            vec!["Harbour loft", "Tiny_room 100%"],
        ),
        ("pricePerNight=80", vec!["Harbour loft"]),
        ("propertyType=HOUSE", vec!["Hill house"]),
        ("currency=eu", vec!["Hill house"]),
        ("isPublished=false", vec![]),
    ];
    for (query, expected) in cases {
        let (status, body) = call(
            &node,
            Method::GET,
            &format!("/propertycatalog-api/v1/listings?{query}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(titles(&body), expected, "{query}");
    }
    let (_, body) = call(
        &node,
        Method::GET,
        &format!("/propertycatalog-api/v1/listings?hostId={}", bob.id),
        None,
        None,
    )
    .await;
    assert_eq!(titles(&body), vec!["Tiny_room 100%"]);
    // The host sees their unpublished listing; the public does not.
    let (_, body) = call(
        &node,
        Method::GET,
        "/propertycatalog-api/v1/listings?isPublished=false",
        Some(&bob.token),
        None,
    )
    .await;
    assert_eq!(titles(&body), vec!["Secret villa"]);
    // Joins and paging.
    let (_, body) = call(
        &node,
        Method::GET,
        "/propertycatalog-api/v1/listings?pageRowCount=2",
        None,
        None,
    )
    .await;
    assert_eq!(body["listings"].as_array().unwrap().len(), 2);
    assert_eq!(body["paging"]["totalRowCount"], 3);
    assert_eq!(body["paging"]["pageCount"], 2);
    assert_eq!(body["listings"][0]["amenities"], json!([]));
    assert_eq!(body["listings"][0]["reviews"], json!([]));
    for bad in [
        "pageRowCount=101",
        "pricePerNight=$lt-cheap",
        "propertyType=castle",
        "isPublished=maybe",
        "colour=red",
        "pageNumber=-1",
    ] {
        let (status, body) = call(
            &node,
            Method::GET,
            &format!("/propertycatalog-api/v1/listings?{bad}"),
            None,
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(ids.len(), 4);
}

#[actix_web::test]
async fn calendar_days_belong_to_the_host_and_booked_nights_stay_with_their_reservation() {
    let node = spawn_node().await;
    let (host, guest, other) = (node.user().await, node.user().await, node.user().await);
    let l = listing(&node, &host, "instant", 100.0, "USD").await;
    let id = l["id"].as_str().unwrap();
    let entry = json!({"listingId": id, "date": day(30), "isAvailable": true, "priceOverride": 120, "minStay": 2, "externalCalendarIds": ["airbnb:1"], "iCalUrl": "https://example.com/c.ics"});
    let (status, _) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&other.token),
        Some(&entry),
    )
    .await;
    assert_eq!(status, 403, "only the host");
    let (status, body) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&host.token),
        Some(&entry),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let d = body["listingCalendar"].clone();
    assert_eq!(d["date"], json!(day(30)));
    assert_eq!(d["priceOverride"], json!(120));
    assert_eq!(d["minStay"], 2);
    assert_eq!(d["isAvailable"], true);
    assert_eq!(d["externalCalendarIds"], json!(["airbnb:1"]));
    let day_path = format!(
        "/propertycatalog-api/v1/listingcalendars/{}",
        d["id"].as_str().unwrap()
    );
    // One entry per listing and date.
    let (status, body) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&host.token),
        Some(&entry),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "errMsg_listingCalendarExists");
    for bad in [
        json!({"listingId": id, "date": "30/12/2027", "isAvailable": true}),
        json!({"listingId": id, "date": day(3), "isAvailable": "no"}),
        json!({"listingId": id, "date": day(3), "isAvailable": true, "priceOverride": 1.234}),
        json!({"listingId": "nope", "date": day(3), "isAvailable": true}),
    ] {
        let (status, body) = call(
            &node,
            Method::POST,
            "/propertycatalog-api/v1/listingcalendars",
            Some(&host.token),
            Some(&bad),
        )
        .await;
        assert!(status == 400 || status == 404, "{bad}: {status} {body}");
    }
    let (status, body) = call(
        &node,
        Method::PATCH,
        &day_path,
        Some(&host.token),
        Some(&json!({"priceOverride": null, "isAvailable": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listingCalendar"]["priceOverride"], Value::Null);
    assert_eq!(body["listingCalendar"]["recordVersion"], 2);
    let (status, _) = call(
        &node,
        Method::PATCH,
        &day_path,
        Some(&host.token),
        Some(&json!({"date": day(31)})),
    )
    .await;
    assert_eq!(status, 400, "the date is fixed");

    // A booked night: visible as booked, its guest only to host and guest.
    let reservation = booked(&node, &guest, &l, 5, 1).await;
    let (_, body) = call(
        &node,
        Method::GET,
        &format!(
            "/propertycatalog-api/v1/listingcalendars?listingId={id}&date={}",
            day(5)
        ),
        Some(&other.token),
        None,
    )
    .await;
    let night = body["listingCalendars"][0].clone();
    assert_eq!(night["isAvailable"], false, "{body}");
    assert_eq!(
        night["bookedBy"],
        Value::Null,
        "strangers do not see who booked"
    );
    let (_, body) = call(
        &node,
        Method::GET,
        &format!(
            "/propertycatalog-api/v1/listingcalendars?listingId={id}&date={}",
            day(5)
        ),
        Some(&host.token),
        None,
    )
    .await;
    assert_eq!(body["listingCalendars"][0]["bookedBy"], json!(guest.id));
    let night_path = format!(
        "/propertycatalog-api/v1/listingcalendars/{}",
        night["id"].as_str().unwrap()
    );
    let (status, body) = call(
        &node,
        Method::PATCH,
        &night_path,
        Some(&host.token),
        Some(&json!({"isAvailable": true})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "errMsg_nightIsBooked");
    let (status, _) = call(&node, Method::DELETE, &night_path, Some(&host.token), None).await;
    assert_eq!(status, 409);
    // The listing cannot be deleted under a live reservation.
    let (status, body) = call(
        &node,
        Method::DELETE,
        &format!("/propertycatalog-api/v1/listings/{id}"),
        Some(&host.token),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["message"], "errMsg_listingHasReservations");

    // Date filters.
    let (_, body) = call(
        &node,
        Method::GET,
        &format!(
            "/propertycatalog-api/v1/listingcalendars?listingId={id}&date=$leq-{}",
            day(10)
        ),
        None,
        None,
    )
    .await;
    assert_eq!(
        body["listingCalendars"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    let (_, body) = call(
        &node,
        Method::GET,
        &format!("/propertycatalog-api/v1/listingcalendars?listingId={id}&date=$ltoday"),
        None,
        None,
    )
    .await;
    assert_eq!(body["listingCalendars"], json!([]));
    let (status, _) = call(
        &node,
        Method::GET,
        "/propertycatalog-api/v1/listingcalendars?date=$yesterday",
        None,
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Delete a free day: soft, then gone; a new entry for the date comes back under its id.
    let (status, body) = call(&node, Method::DELETE, &day_path, Some(&host.token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["listingCalendar"]["isActive"], false);
    assert_eq!(call(&node, Method::GET, &day_path, None, None).await.0, 404);
    let (status, body) = call(
        &node,
        Method::POST,
        "/propertycatalog-api/v1/listingcalendars",
        Some(&host.token),
        Some(&entry),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["listingCalendar"]["id"], d["id"]);

    // The listing's rezervations join shows the booking; the guest id only to its host.
    let (_, body) = call(
        &node,
        Method::GET,
        &format!("/propertycatalog-api/v1/listings/{id}"),
        Some(&other.token),
        None,
    )
    .await;
    assert_eq!(
        body["listing"]["rezervations"][0]["bookingStatus"],
        "pending"
    );
    assert_eq!(body["listing"]["rezervations"][0]["guestId"], Value::Null);
    let (_, body) = call(
        &node,
        Method::GET,
        &format!("/propertycatalog-api/v1/listings/{id}"),
        Some(&host.token),
        None,
    )
    .await;
    assert_eq!(
        body["listing"]["rezervations"][0]["guestId"],
        json!(guest.id)
    );
    assert_eq!(reservation["listingId"], json!(id));
}

#[actix_web::test]
async fn an_array_body_is_refused_on_every_marketplace_write() {
    let node = spawn_node().await;
    let user = node.user().await;
    for path in [
        "/auth-api/v1/registeruser",
        "/auth-api/login",
        "/messaging-api/v1/messagethreads",
        "/notification-api/devices/register",
        "/bookingmanagement-api/v1/disputes",
        "/propertycatalog-api/v1/listings",
        "/propertycatalog-api/v1/listingcalendars",
        "/bookingmanagement-api/v1/reservations",
        "/reviewsystem-api/v1/reviews",
    ] {
        let body = json!(["someone@example.com", "a password", "A Name"]);
        let (status, answer) =
            call(&node, Method::POST, path, Some(&user.token), Some(&body)).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["result"], "ERR", "{path}: {answer}");
    }
}
