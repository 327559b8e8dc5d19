//! The admin dashboard: a static shell (HTML, JS, CSS) embedded in the binary and served
//! under `/admin/`. The shell holds no data and needs no credentials; the page asks for
//! the admin token (or a `service_role` JWT) and sends it as a bearer token on every call
//! to the JSON endpoints (`/admin/queues`, `/admin/workers`, `/admin/failures`,
//! `/admin/queues/{queue}/dead`, `/admin/jobs/{id}/requeue|discard`, `/v1/jobs/{id}`).
//!
//! Every asset is answered with `Cache-Control: no-cache` (revalidated through a strong
//! `ETag`, so a new binary's UI is picked up at once) and a strict Content-Security-Policy:
//! same-origin scripts, styles and requests only, no inline code, no framing.

use std::sync::OnceLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

/// The Content-Security-Policy of every dashboard asset.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../../admin-ui/index.html"),
    content_type: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    body: include_str!("../../admin-ui/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    body: include_str!("../../admin-ui/app.css"),
    content_type: "text/css; charset=utf-8",
};

/// FNV-1a, 64 bits: enough to tell one build's asset from another's.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The strong ETags of the three assets, computed once.
fn etags() -> &'static [String; 3] {
    static ETAGS: OnceLock<[String; 3]> = OnceLock::new();
    ETAGS.get_or_init(|| {
        [INDEX, APP_JS, APP_CSS].map(|a| format!("\"{:016x}\"", fnv1a(a.body.as_bytes())))
    })
}

fn serve(req: &HttpRequest, asset: &Asset, etag: &str) -> HttpResponse {
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if fresh {
        res.finish()
    } else {
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .body(asset.body)
    }
}

/// `GET /admin/` (and `/admin/index.html`): the page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX, &etags()[0])
}

/// `GET /admin/app.js`.
pub async fn app_js(req: HttpRequest) -> HttpResponse {
    serve(&req, &APP_JS, &etags()[1])
}

/// `GET /admin/app.css`.
pub async fn app_css(req: HttpRequest) -> HttpResponse {
    serve(&req, &APP_CSS, &etags()[2])
}

/// `GET /admin`: to `/admin/`, relative so that it also works behind a path prefix.
pub async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "admin/"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .finish()
}

/// Registers the dashboard's asset routes (before the JSON 404 default service).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin", web::get().to(to_index))
        .route("/admin/", web::get().to(index))
        .route("/admin/index.html", web::get().to(index))
        .route("/admin/app.js", web::get().to(app_js))
        .route("/admin/app.css", web::get().to(app_css));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{http::StatusCode, test, App};

    async fn get(path: &str) -> actix_web::dev::ServiceResponse {
        let app = test::init_service(App::new().configure(configure)).await;
        test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await
    }

    fn header<'a>(res: &'a actix_web::dev::ServiceResponse, name: &str) -> &'a str {
        res.headers()
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .to_str()
            .unwrap()
    }

    #[actix_web::test]
    async fn the_three_assets_are_served_with_their_types_and_a_strict_csp() {
        for (path, content_type, marker) in [
            ("/admin/", "text/html; charset=utf-8", "<!doctype html>"),
            (
                "/admin/index.html",
                "text/html; charset=utf-8",
                "<!doctype html>",
            ),
            (
                "/admin/app.js",
                "text/javascript; charset=utf-8",
                "sessionStorage",
            ),
            ("/admin/app.css", "text/css; charset=utf-8", "--c-waiting"),
        ] {
            let res = get(path).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&res, "content-type"), content_type, "{path}");
            assert_eq!(header(&res, "cache-control"), "no-cache", "{path}");
            assert_eq!(header(&res, "x-content-type-options"), "nosniff", "{path}");
            let csp = header(&res, "content-security-policy");
            assert!(csp.starts_with("default-src 'self'"), "{path}: {csp}");
            assert!(
                !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
                "{csp}"
            );
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            let body = test::read_body(res).await;
            let body = std::str::from_utf8(&body).unwrap();
            assert!(body.contains(marker), "{path} lacks {marker}");
        }
    }

    /// ` on<letters>=` anywhere: an inline event handler attribute.
    fn has_event_handler_attribute(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            name_len > 0 && rest[name_len..].trim_start().starts_with('=')
        })
    }

    #[actix_web::test]
    async fn the_event_handler_check_works() {
        assert!(has_event_handler_attribute("<a onclick=\"x()\">"));
        assert!(has_event_handler_attribute("<body onload = x>"));
        assert!(!has_event_handler_attribute("<p>depends on the queue</p>"));
    }

    #[actix_web::test]
    async fn the_page_loads_nothing_from_elsewhere_and_has_no_inline_code() {
        let html = INDEX.body;
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "external URL in index.html"
        );
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains(" style="), "inline style attribute");
        assert!(!has_event_handler_attribute(html), "inline event handler");
        for script in html.split("<script").skip(1) {
            assert!(script.contains("src=\"app.js\""), "inline script: {script}");
        }
        assert!(html.contains("href=\"app.css\""));
        // The script builds DOM from server data with textContent only.
        assert!(!APP_JS.body.contains("innerHTML"), "app.js uses innerHTML");
        assert!(!APP_JS.body.contains("eval("), "app.js uses eval");
        assert!(!APP_JS.body.contains("http://") && !APP_JS.body.contains("https://"));
    }

    #[actix_web::test]
    async fn admin_without_slash_redirects_to_the_page() {
        let res = get("/admin").await;
        assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header(&res, "location"), "admin/");
    }

    #[actix_web::test]
    async fn a_matching_etag_answers_304_without_a_body() {
        let app = test::init_service(App::new().configure(configure)).await;
        let res = test::call_service(
            &app,
            test::TestRequest::get().uri("/admin/app.js").to_request(),
        )
        .await;
        let etag = header(&res, "etag").to_owned();
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/admin/app.js")
                .insert_header(("if-none-match", etag.as_str()))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&res, "cache-control"), "no-cache");
        assert!(test::read_body(res).await.is_empty());
        // Another asset's tag does not match.
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/admin/app.css")
                .insert_header(("if-none-match", etag.as_str()))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}
