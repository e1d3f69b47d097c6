//! Any body: either it is refused as not-an-object (400) or each resource's validation answers
//! Ok or a list of field problems; nothing panics.
#![no_main]

use gitrev_api::ApiError;
use gitrev_core::model::{NewEvent, NewUrl, NewUser, UrlChanges, UserChanges};
use gitrev_http::body::json_object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(obj) = json_object(data) else {
        return;
    };
    let validations = [
        NewUser::from_json(&obj).err(),
        UserChanges::from_json(&obj).err(),
        NewUrl::from_json(&obj).err(),
        UrlChanges::from_json(&obj).err(),
        NewEvent::from_json(&obj).err(),
    ];
    for err in validations.into_iter().flatten() {
        let err = ApiError::from(err);
        assert!(matches!(err, ApiError::Validation(ref f) if !f.is_empty()), "{err:?}");
        let body = err.body();
        assert_eq!(body["code"], "validation_failed");
    }
});
