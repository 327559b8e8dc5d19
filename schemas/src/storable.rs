//! Text PostgreSQL can store. `text` and `jsonb` cannot hold U+0000 (NUL): a request or
//! callback carrying one anywhere is refused up front (a 4xx naming the field) rather than
//! failing its insert (a 500). Both services check with [`nul_path`].

use serde_json::{Map, Value};

/// The path below `v` of the first string or key holding U+0000 (`""` for `v` itself),
/// as `.key[2].key`. The path is built only on the way back from a find, so a clean value
/// costs a walk and no allocation.
pub fn nul_path(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|p| format!("[{i}]{p}"))),
        Value::Object(map) => nul_in_map(map),
        _ => None,
    }
}

/// [`nul_path`] for the members of an object; a key holding NUL is ` (a key)`.
pub fn nul_in_map(map: &Map<String, Value>) -> Option<String> {
    map.iter().find_map(|(k, v)| {
        if k.contains('\0') {
            Some(format!(".{} (a key)", k.replace('\0', "\\u0000")))
        } else {
            nul_path(v).map(|p| format!(".{k}{p}"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_path_names_the_first_string_holding_nul() {
        let v = json!({"a": "ok", "b": [1, {"c": "x\u{0}y"}]});
        assert_eq!(nul_path(&v).as_deref(), Some(".b[1].c"));
        assert_eq!(nul_path(&json!("\u{0}")).as_deref(), Some(""));
        assert_eq!(
            nul_path(&json!({"a\u{0}": 1})).as_deref(),
            Some(".a\\u0000 (a key)")
        );
    }

    #[test]
    fn clean_values_have_no_path() {
        assert_eq!(nul_path(&json!({"a": ["b", 1, null, {"c": "d"}]})), None);
    }
}
