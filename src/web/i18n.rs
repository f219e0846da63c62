//! Page texts, by locale. Templates never hold English: they ask `t.get(key)`
//! (or `t.with(key, value)` for texts with one `{}`), and the texts live in
//! `locales/<lang>.toml`, compiled in. Adding a language is adding a file
//! here and a line in `CATALOGUES`.

use std::collections::HashMap;
use std::sync::OnceLock;

const CATALOGUES: &[(&str, &str)] = &[("en", include_str!("../../locales/en.toml"))];

type Catalogue = HashMap<String, String>;

fn catalogues() -> &'static HashMap<&'static str, Catalogue> {
    static ALL: OnceLock<HashMap<&'static str, Catalogue>> = OnceLock::new();
    ALL.get_or_init(|| {
        CATALOGUES
            .iter()
            .map(|(lang, text)| {
                let table: toml::Table = toml::from_str(text).expect("locale files are checked by tests");
                let mut flat = Catalogue::new();
                flatten("", &table, &mut flat);
                (*lang, flat)
            })
            .collect()
    })
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Catalogue) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            // Only strings are texts.
            _ => {}
        }
    }
}

/// The texts of one locale.
#[derive(Clone, Copy)]
pub struct T {
    lang: &'static str,
    texts: &'static Catalogue,
}

impl T {
    /// The first of the preferred languages (`ui_locales`, then Accept-Language) that has texts; English otherwise.
    pub fn pick(preferred: &[&str]) -> T {
        let all = catalogues();
        for p in preferred {
            let lang = p
                .split(['-', '_', ';'])
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if let Some((l, texts)) = all.get_key_value(lang.as_str()) {
                return T { lang: l, texts };
            }
        }
        T {
            lang: "en",
            texts: &all["en"],
        }
    }

    pub fn lang(&self) -> &'static str {
        self.lang
    }

    pub fn get<'a>(&self, key: &'a str) -> &'a str
    where
        'static: 'a,
    {
        self.texts.get(key).map(String::as_str).unwrap_or(key)
    }

    /// The text with its `{}` replaced by `value`.
    pub fn with(&self, key: &str, value: impl std::fmt::Display) -> String {
        self.get(key).replacen("{}", &value.to_string(), 1)
    }
}

impl Default for T {
    fn default() -> Self {
        T::pick(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `t.get("…")` / `t.with("…", …)` in a template has an English text.
    #[test]
    fn every_key_used_by_a_template_has_an_english_text() {
        let en = &catalogues()["en"];
        let mut missing = vec![];
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/pages")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for call in ["t.get(\"", "t.with(\""] {
                for piece in text.split(call).skip(1) {
                    let key = piece.split('"').next().unwrap();
                    if !en.contains_key(key) {
                        missing.push(format!("{}: {key}", path.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "keys without English text: {missing:#?}");
    }

    #[test]
    fn unknown_languages_fall_back_to_english() {
        assert_eq!(T::pick(&["xx-YY", "en-GB"]).lang(), "en");
        assert_eq!(T::pick(&["fr"]).lang(), "en");
        assert_eq!(T::pick(&[]).get("login.title"), "Sign in");
    }
}
