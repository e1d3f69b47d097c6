//! Any path: the router answers a route (never panics), and a redirect's code is a piece of the
//! path it was given.
#![no_main]

use gitrev_http::router::{route, Route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let matched = route(path);
    let _ = matched.name();
    if let Route::Redirect(code) = matched {
        assert!(path.contains(code), "{code:?} is not in {path:?}");
    }
});
