//! Request bodies: forms and JSON objects, under each content type the
//! endpoints accept. The first byte picks the content type.
#![no_main]
use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 4] = [
    "application/x-www-form-urlencoded",
    "application/json",
    "application/json; charset=utf-8",
    "application/merge-patch+json",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let content_type = TYPES[pick as usize % TYPES.len()];
    if let Ok(params) = sesame::params::Params::parse(content_type, body) {
        let _ = params.get("grant_type");
        let _ = params.all("scope");
    }
    let _ = sesame::params::json_object::<serde_json::Map<String, serde_json::Value>>(body);
});
