//! Every row of the table, then hostile inputs.

use super::*;

const U: &str = "11111111-1111-1111-1111-111111111111";
const V: &str = "22222222-2222-2222-2222-222222222222";
const HOST: &str = "https://proj.supabase.co";

fn rules() -> StorageRules {
    let mut buckets: Vec<String> = gpuq_schemas::JobType::names().map(String::from).collect();
    buckets.extend(["workspace-temp".to_owned(), "user-library".to_owned()]);
    StorageRules::new(Some(StorageHost::parse(HOST).unwrap()), buckets)
}

fn norm(reported: &str) -> Result<(String, String), PathRejection> {
    let reported = reported.replace("{U}", U).replace("{V}", V);
    normalize(&reported, U.parse().unwrap(), "sdxl_image_fast", &rules())
        .map(|p| (p.bucket().to_owned(), p.key().to_owned()))
}

fn ok(reported: &str, bucket: &str, key: &str) {
    assert_eq!(
        norm(reported),
        Ok((bucket.to_owned(), key.replace("{U}", U))),
        "{reported}"
    );
}

fn rejected(reported: &str, why: PathRejection) {
    assert_eq!(norm(reported), Err(why), "{reported}");
}

// ---- the table ----

#[test]
fn a_bucket_relative_key_stays_in_the_default_bucket() {
    ok(
        "{U}/sdxl_J_1_1.png",
        "sdxl_image_fast",
        "{U}/sdxl_J_1_1.png",
    );
}

#[test]
fn a_bucket_prefixed_key_names_its_bucket() {
    ok("sdxl_image_fast/{U}/a.png", "sdxl_image_fast", "{U}/a.png");
    ok(
        "workspace-temp/{U}/J/0.png",
        "workspace-temp",
        "{U}/J/0.png",
    );
}

#[test]
fn a_bare_file_name_goes_into_the_owners_folder() {
    ok("a.png", "sdxl_image_fast", "{U}/a.png");
}

#[test]
fn a_full_public_url_on_the_storage_host_loses_its_query() {
    ok(
        "https://proj.supabase.co/storage/v1/object/public/sdxl_image_fast/{U}/a.png?token=x",
        "sdxl_image_fast",
        "{U}/a.png",
    );
}

#[test]
fn a_signed_object_path_names_its_bucket() {
    ok(
        "/storage/v1/object/sign/video_fast/{U}/v.mp4?token=abc",
        "video_fast",
        "{U}/v.mp4",
    );
}

#[test]
fn duplicate_slashes_collapse() {
    ok("{U}//a.png", "sdxl_image_fast", "{U}/a.png");
}

#[test]
fn dot_dot_segments_are_traversal() {
    rejected("{U}/../{V}/a.png", PathRejection::Traversal);
}

#[test]
fn percent_encoded_dot_dot_is_traversal() {
    rejected("{U}/%2e%2e/a.png", PathRejection::Traversal);
}

#[test]
fn a_backslash_is_refused() {
    rejected("{U}\\a.png", PathRejection::Backslash);
}

#[test]
fn a_control_character_is_refused() {
    rejected("{U}/a\u{0}.png", PathRejection::ControlCharacter);
    rejected("{U}/a\n.png", PathRejection::ControlCharacter);
}

#[test]
fn another_users_folder_is_refused() {
    rejected("{V}/a.png", PathRejection::ForeignUser);
}

#[test]
fn a_foreign_host_is_refused() {
    rejected(
        "https://evil.example/a.png",
        PathRejection::ForeignHost("evil.example".into()),
    );
}

// ---- more accepted forms ----

#[test]
fn authenticated_and_upload_object_paths_are_accepted() {
    ok(
        "/storage/v1/object/authenticated/user-library/{U}/x/y.png",
        "user-library",
        "{U}/x/y.png",
    );
    ok(
        "/storage/v1/object/image_high/{U}/y.png",
        "image_high",
        "{U}/y.png",
    );
    ok(
        "storage/v1/object/public/image_fast/{U}/z.png",
        "image_fast",
        "{U}/z.png",
    );
}

#[test]
fn urls_are_decoded_once_and_fragments_dropped() {
    ok(
        "https://PROJ.supabase.co:443/storage/v1/object/public/sdxl_image_fast/{U}/a%20b.png#x",
        "sdxl_image_fast",
        "{U}/a b.png",
    );
}

#[test]
fn a_bucket_prefixed_bare_name_goes_into_the_owners_folder() {
    ok("workspace-temp/a.png", "workspace-temp", "{U}/a.png");
}

#[test]
fn leading_slashes_on_a_relative_key_are_ignored() {
    ok("/{U}/a.png", "sdxl_image_fast", "{U}/a.png");
}

// ---- hostile inputs ----

#[test]
fn empty_and_slash_only_paths_are_refused() {
    for p in [
        "",
        "/",
        "///",
        "?token=x",
        "{U}/",
        "/storage/v1/object/public/",
    ] {
        assert!(norm(p).is_err(), "{p}");
    }
    rejected("", PathRejection::Empty);
    rejected("{U}/", PathRejection::NoFileName);
}

#[test]
fn every_spelling_of_dot_segments_is_traversal() {
    for p in [
        "{U}/./a.png",
        "{U}/%2E%2E/a.png",
        "{U}/.%2e/a.png",
        "{U}/%2e/a.png",
        "..",
        "../{U}/a.png",
        "sdxl_image_fast/../{U}/a.png",
        "/storage/v1/object/public/sdxl_image_fast/{U}/../{V}/a.png",
        "https://proj.supabase.co/storage/v1/object/public/sdxl_image_fast/{U}/%2e%2e/{V}/a.png",
        "{U}/a%2fb.png",
        "{U}/..%2f{V}/a.png",
    ] {
        rejected(p, PathRejection::Traversal);
    }
}

#[test]
fn encoded_backslashes_and_control_characters_are_refused() {
    rejected("{U}/%5c..%5ca.png", PathRejection::Backslash);
    rejected("{U}/a%00.png", PathRejection::ControlCharacter);
    rejected("{U}/a%0d%0a.png", PathRejection::ControlCharacter);
    rejected("{U}/a\u{7f}.png", PathRejection::ControlCharacter);
    rejected("{U}/a\u{85}.png", PathRejection::ControlCharacter);
}

#[test]
fn double_encoding_and_invalid_utf8_are_refused() {
    rejected("{U}/%252e%252e/a.png", PathRejection::InvalidEncoding);
    rejected("{U}/%ff.png", PathRejection::InvalidEncoding);
}

#[test]
fn other_schemes_are_refused() {
    for (p, scheme) in [
        ("file:///etc/passwd", "file"),
        ("javascript:alert(1)", "javascript"),
        ("s3://sdxl_image_fast/{U}/a.png", "s3"),
        ("data:image/png;base64,AAAA", "data"),
        ("HTTPS:proj.supabase.co/a.png", "https"),
    ] {
        rejected(p, PathRejection::UnsupportedScheme(scheme.into()));
    }
}

#[test]
fn hosts_that_only_look_like_the_storage_host_are_foreign() {
    for p in [
        "https://proj.supabase.co.evil.example/storage/v1/object/public/image_fast/{U}/a.png",
        "https://proj.supabase.co@evil.example/storage/v1/object/public/image_fast/{U}/a.png",
        "https://evil.example?x=@proj.supabase.co/storage/v1/object/public/image_fast/{U}/a.png",
        "http://proj.supabase.co/storage/v1/object/public/image_fast/{U}/a.png",
        "https://proj.supabase.co:8443/storage/v1/object/public/image_fast/{U}/a.png",
        "https://other.supabase.co/storage/v1/object/public/image_fast/{U}/a.png",
        "//evil.example/storage/v1/object/public/image_fast/{U}/a.png",
    ] {
        assert!(
            matches!(
                norm(p),
                Err(PathRejection::ForeignHost(_) | PathRejection::NotUserScoped)
            ),
            "{p}: {:?}",
            norm(p)
        );
    }
}

#[test]
fn without_a_configured_host_every_url_is_foreign() {
    let rules = StorageRules::new(None, vec!["sdxl_image_fast".into()]);
    let url =
        format!("https://proj.supabase.co/storage/v1/object/public/sdxl_image_fast/{U}/a.png");
    assert!(matches!(
        normalize(&url, U.parse().unwrap(), "sdxl_image_fast", &rules),
        Err(PathRejection::ForeignHost(_))
    ));
}

#[test]
fn urls_on_the_host_must_be_storage_object_paths() {
    rejected(
        "https://proj.supabase.co/{U}/a.png",
        PathRejection::NotAStorageObject,
    );
    rejected(
        "/storage/v1/render/image/public/image_fast/{U}/a.png",
        PathRejection::NotAStorageObject,
    );
}

#[test]
fn unknown_buckets_in_object_paths_are_refused() {
    rejected(
        "/storage/v1/object/public/secrets/{U}/a.png",
        PathRejection::UnknownBucket("secrets".into()),
    );
}

#[test]
fn keys_outside_the_owners_folder_are_refused() {
    rejected("other-bucket/{U}/a.png", PathRejection::NotUserScoped);
    rejected("J/0.png", PathRejection::NotUserScoped);
    rejected(
        "/storage/v1/object/public/image_fast/a.png",
        PathRejection::NotUserScoped,
    );
    rejected("workspace-temp/{V}/a.png", PathRejection::ForeignUser);
}

#[test]
fn other_spellings_of_a_user_id_are_not_the_owner() {
    let owner = "abcdefab-1111-4111-8111-abcdefabcdef";
    let check =
        |reported: String| normalize(&reported, owner.parse().unwrap(), "image_fast", &rules());
    assert!(check(format!("{owner}/a.png")).is_ok());
    for other in [
        owner.to_uppercase(),
        owner.replace('-', ""),
        format!("{{{owner}}}"),
        format!("urn:uuid:{owner}"),
    ] {
        assert!(check(format!("{other}/a.png")).is_err(), "{other}");
    }
    rejected("{U}", PathRejection::NoFileName);
}

#[test]
fn overlong_input_is_refused() {
    rejected(
        &format!("{{U}}/{}", "a".repeat(3000)),
        PathRejection::TooLong,
    );
    rejected(
        &format!("{{U}}/{}", "a".repeat(1100)),
        PathRejection::TooLong,
    );
}

#[test]
fn the_storage_host_setting_is_validated() {
    assert!(StorageHost::parse("https://proj.supabase.co/").is_ok());
    assert!(StorageHost::parse("http://127.0.0.1:54321").is_ok());
    for bad in [
        "proj.supabase.co",
        "ftp://proj.supabase.co",
        "https://proj.supabase.co/storage",
        "https://u:p@proj.supabase.co",
    ] {
        assert!(StorageHost::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_local_storage_host_with_a_port_matches_only_that_port() {
    let rules = StorageRules::new(
        Some(StorageHost::parse("http://127.0.0.1:54321").unwrap()),
        vec!["image_fast".into()],
    );
    let owner: UserId = U.parse().unwrap();
    let good = format!("http://127.0.0.1:54321/storage/v1/object/public/image_fast/{U}/a.png");
    assert!(normalize(&good, owner, "image_fast", &rules).is_ok());
    let bad = format!("http://127.0.0.1/storage/v1/object/public/image_fast/{U}/a.png");
    assert!(normalize(&bad, owner, "image_fast", &rules).is_err());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Path-ish strings: segments from a hostile alphabet (dots, slashes, percent escapes,
    /// backslashes, control characters, other users' ids, bucket names, URL prefixes).
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just(U.to_owned()),
            Just(V.to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("%2F".to_owned()),
            Just("%5c".to_owned()),
            Just("%00".to_owned()),
            Just("\\".to_owned()),
            Just("\u{0}".to_owned()),
            Just("sdxl_image_fast".to_owned()),
            Just("user-library".to_owned()),
            Just("https://proj.supabase.co/storage/v1/object/public".to_owned()),
            Just("/storage/v1/object/sign".to_owned()),
            Just("https://evil.example".to_owned()),
            "[a-zA-Z0-9_.-]{0,12}",
            any::<String>(),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|parts| parts.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever is reported, a normalized key lies under the job owner's folder and is
        /// free of traversal, backslashes and control characters; nothing panics.
        #[test]
        fn normalized_keys_never_leave_the_owners_prefix(reported in hostile()) {
            if let Ok(p) = normalize(&reported, U.parse().unwrap(), "sdxl_image_fast", &rules()) {
                let key = p.key();
                prop_assert!(key.starts_with(&format!("{U}/")), "{key}");
                prop_assert!(key.split('/').all(|s| !s.is_empty() && s != ".." && s != "."), "{key}");
                prop_assert!(!key.contains('\\') && !key.chars().any(char::is_control), "{key}");
                prop_assert!(!key.to_ascii_lowercase().contains("%2e") && !key.contains("%2f") && !key.contains("%2F"), "{key}");
                prop_assert!(rules().is_bucket(p.bucket()), "{}", p.bucket());
            }
        }
    }
}
