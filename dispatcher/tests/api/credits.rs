//! Credits at the dispatcher: the hold at enqueue (402 and nothing written when short, a
//! burst never overdraws, an idempotent enqueue holds once), its release when a job is
//! cancelled, misses its start deadline or dies, a fresh hold when an admin requeues a dead
//! job, and the account, ledger and usage endpoints with their bad inputs.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use gpuq_queue::{ConsumerName, FailOutcome, Failure};

use crate::helpers::*;

/// An app with credits on and a starting grant of `grant`.
async fn with_credits(grant: u32) -> TestApp {
    spawn_app_with(|s| {
        s.credits.enabled = true;
        s.credits.starting_grant = grant;
    })
    .await
}

/// (balance, held) of `tenant`'s account; (0, 0) without one.
async fn account(app: &TestApp, tenant: &Uuid) -> (i64, i64) {
    sqlx::query_as("SELECT balance, held FROM credit_accounts WHERE tenant = $1")
        .bind(tenant.to_string())
        .fetch_optional(&app.db)
        .await
        .unwrap()
        .unwrap_or((0, 0))
}

/// The kinds of a job's ledger entries, in order.
async fn entries(app: &TestApp, job: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM credit_ledger WHERE job_id = $1::uuid ORDER BY id")
        .bind(job)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

async fn violations(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT kind || ': ' || detail FROM credit_violations")
        .fetch_all(&app.db)
        .await
        .unwrap()
}

/// `GET /v1/credits` as `user`.
async fn own_credits(app: &TestApp, user: Uuid) -> Value {
    let resp = app
        .http
        .get(app.url("/v1/credits"))
        .bearer_auth(token_for(user))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

async fn change_credits(
    app: &TestApp,
    tenant: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .http
        .post(app.url(&format!("/admin/tenants/{tenant}/credits")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn an_enqueue_its_tenant_cannot_cover_is_refused_with_402_and_writes_nothing() {
    let app = with_credits(3).await;
    let user = Uuid::new_v4();
    let resp = app
        .post_job(&token_for(user), &job_body("video_high", "x"))
        .await;
    let body = assert_error(resp, 402, "insufficient_credits").await;
    assert_eq!(
        body["error"]["credits"],
        json!({"balance": 3, "held": 0, "available": 3, "price": 5})
    );
    assert_eq!(app.job_count().await, 0);
    assert_eq!(app.waiting("wan_queue").await, 0);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM credit_ledger")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kinds, ["grant"], "only the starting grant");
    assert_eq!(account(&app, &user).await, (3, 0));

    // A job it can cover is held.
    let id = app.enqueued(&token_for(user), "image_high").await;
    assert_eq!(entries(&app, &id.to_string()).await, ["hold"]);
    assert_eq!(account(&app, &user).await, (3, 2));
}

#[tokio::test]
async fn a_concurrent_burst_by_one_tenant_never_holds_more_than_its_balance() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let body = job_body("sdxl_image_fast", "burst");
    let posts = (0..16).map(|_| app.post_job(&token, &body));
    let statuses: Vec<u16> = futures_util::future::join_all(posts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 402).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(account(&app, &user).await, (10, 10));
    assert_eq!(app.job_count().await, 10);
    assert!(violations(&app).await.is_empty());
}

#[tokio::test]
async fn an_idempotent_enqueue_holds_once() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let body = job_body("image_high", "once");
    for _ in 0..3 {
        let resp = app.post_job_with_key(&token, &body, "key-1").await;
        assert_eq!(resp.status().as_u16(), 202);
    }
    assert_eq!(app.job_count().await, 1);
    assert_eq!(account(&app, &user).await, (10, 2));
}

#[tokio::test]
async fn a_cancelled_job_releases_its_hold() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let token = token_for(user);
    let id = app.enqueued(&token, "video_fast").await.to_string();
    assert_eq!(account(&app, &user).await, (10, 3));
    assert_eq!(app.cancel_job(&token, &id).await.status().as_u16(), 200);
    assert_eq!(entries(&app, &id).await, ["hold", "release"]);
    assert_eq!(account(&app, &user).await, (10, 0));
    assert!(violations(&app).await.is_empty());
}

#[tokio::test]
async fn a_job_past_its_start_deadline_releases_its_hold() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let mut body = job_body("sdxl_image_fast", "late");
    body["startWithinSeconds"] = json!(1);
    let resp = app.post_job(&token_for(user), &body).await;
    let id = resp.json::<Value>().await.unwrap()["job"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..60 {
        if app.status_of(&id).await == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.status_of(&id).await, "failed");
    assert_eq!(entries(&app, &id).await, ["hold", "release"]);
    let reason: Option<String> = sqlx::query_scalar(
        "SELECT reason FROM credit_ledger WHERE job_id = $1::uuid AND kind = 'release'",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(reason.as_deref(), Some("start_deadline_exceeded"));
    assert_eq!(account(&app, &user).await, (10, 0));
}

/// Enqueues a job for `user`, has a worker fail it for good and records the death as the
/// callback service does; its id.
async fn dead_job(app: &TestApp, user: Uuid) -> String {
    let id = app.enqueued(&token_for(user), "sdxl_image_high").await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("w");
    let job = q.claim(&w, 1).await.unwrap().remove(0);
    let failure = Failure {
        retryable: false,
        message: "bad prompt".into(),
    };
    let out = q.fail(job.id, Some(&w), &failure).await.unwrap();
    assert_eq!(out, FailOutcome::Dead { attempt: 1 });
    sqlx::query("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    id.to_string()
}

async fn requeue(app: &TestApp, id: &str) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/admin/jobs/{id}/requeue")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dead_job_releases_its_hold_and_an_admin_requeue_holds_it_again() {
    let app = with_credits(3).await;
    let user = Uuid::new_v4();
    let id = dead_job(&app, user).await;
    assert_eq!(entries(&app, &id).await, ["hold", "release"]);
    assert_eq!(account(&app, &user).await, (3, 0));

    assert_eq!(requeue(&app, &id).await.status().as_u16(), 200);
    assert_eq!(entries(&app, &id).await, ["hold", "release", "hold"]);
    assert_eq!(account(&app, &user).await, (3, 2));
    assert!(violations(&app).await.is_empty());
}

#[tokio::test]
async fn a_requeued_job_meters_its_new_life_apart_from_its_first() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let id = app.enqueued(&token_for(user), "sdxl_image_high").await;
    let attempt = |outcome: &'static str| {
        sqlx::query_scalar::<_, Option<f64>>(
            "SELECT gpuq_finish_attempt(j, 1, $2, 'w', 'L4', NULL) FROM jobs j WHERE id = $1",
        )
        .bind(id.as_uuid())
        .bind(outcome)
        .fetch_one(&app.db)
    };
    assert!(attempt("failed").await.unwrap().is_some());
    sqlx::query("UPDATE jobs SET status = 'failed', completed_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();
    // Dead in Redis too, as the worker's failure left it.
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("w");
    q.claim(&w, 1).await.unwrap();
    let failure = Failure {
        retryable: false,
        message: "bad".into(),
    };
    q.fail(id, Some(&w), &failure).await.unwrap();
    assert_eq!(requeue(&app, &id.to_string()).await.status().as_u16(), 200);

    // The new life's first attempt is attempt 1 again, recorded beside the old one.
    assert!(attempt("completed").await.unwrap().is_some());
    let lives: Vec<(i32, i32, String)> = sqlx::query_as(
        "SELECT life, attempt, outcome FROM job_attempts WHERE job_id = $1 ORDER BY life",
    )
    .bind(id.as_uuid())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        lives,
        [(1, 1, "failed".to_owned()), (2, 1, "completed".to_owned())]
    );
}

#[tokio::test]
async fn a_requeue_of_a_job_not_failed_in_postgresql_yet_is_a_409_and_holds_nothing() {
    // A lease the reaper cannot take back meanwhile on a loaded machine (the test leases
    // are 400 ms): the job must stay dead in Redis and unfinished in PostgreSQL.
    let app = spawn_app_with(|s| {
        s.credits.enabled = true;
        s.credits.starting_grant = 10;
        s.queue.lease_ms = 30_000;
    })
    .await;
    let user = Uuid::new_v4();
    let id = app.enqueued(&token_for(user), "sdxl_image_high").await;
    let q = app.queue("sdxl_queue").await;
    let w = ConsumerName::unique("w");
    q.claim(&w, 1).await.unwrap();
    let failure = Failure {
        retryable: false,
        message: "bad".into(),
    };
    let out = q.fail(id, Some(&w), &failure).await.unwrap();
    assert_eq!(out, FailOutcome::Dead { attempt: 1 });
    assert_error(requeue(&app, &id.to_string()).await, 409, "conflict").await;
    assert_eq!(entries(&app, &id.to_string()).await, ["hold"]);
    assert_eq!(account(&app, &user).await, (10, 2));
}

#[tokio::test]
async fn bursts_by_many_users_of_one_tenant_all_succeed_without_deadlock() {
    let app = spawn_app_with(|s| {
        s.credits.enabled = true;
        s.credits.starting_grant = 1000;
        s.auth.tenant_claim = Some("org_id".into());
    })
    .await;
    let tokens: Vec<String> = (0..8)
        .map(|i| {
            let org = if i % 2 == 0 { "org-a" } else { "org-b" };
            token_with(
                json!({"sub": Uuid::new_v4().to_string(), "aud": "authenticated",
                              "exp": now() + 600, "org_id": org}),
            )
        })
        .collect();
    let body = job_body("sdxl_image_fast", "shared");
    let posts = (0..64).map(|i| app.post_job(&tokens[i % tokens.len()], &body));
    let statuses: Vec<u16> = futures_util::future::join_all(posts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    let held: Vec<(String, i64)> =
        sqlx::query_as("SELECT tenant, held FROM credit_accounts ORDER BY tenant")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(held, [("org-a".into(), 32), ("org-b".into(), 32)]);
    assert!(violations(&app).await.is_empty());
}

#[tokio::test]
async fn a_requeue_the_tenant_cannot_cover_is_refused_with_402_and_changes_nothing() {
    let app = with_credits(3).await;
    let user = Uuid::new_v4();
    let id = dead_job(&app, user).await;
    // Another job holds what is left.
    app.enqueued(&token_for(user), "sdxl_image_high").await;
    assert_eq!(account(&app, &user).await, (3, 2));

    let body = assert_error(requeue(&app, &id).await, 402, "insufficient_credits").await;
    assert_eq!(body["error"]["credits"]["available"], 1);
    assert_eq!(app.status_of(&id).await, "failed");
    assert_eq!(entries(&app, &id).await, ["hold", "release"]);
    let dead: Value = app
        .admin_get("/admin/queues/sdxl_queue/dead")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["jobs"][0]["jobId"], id, "still dead in Redis");
}

#[tokio::test]
async fn credits_are_off_by_default_and_nothing_is_held() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    app.enqueued(&token_for(user), "video_high").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_ledger")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let answer = own_credits(&app, user).await;
    assert_eq!(answer["enforced"], false);
    assert_eq!(
        answer["account"],
        json!({"balance": 0, "held": 0, "available": 0})
    );
}

#[tokio::test]
async fn an_admin_grant_applies_once_per_key_and_shows_in_the_callers_account() {
    let app = with_credits(0).await;
    let user = Uuid::new_v4();
    let grant = json!({"kind": "grant", "amount": 25, "reason": "welcome"});
    for applied in [true, false] {
        let resp = change_credits(&app, &user.to_string(), Some("g-1"), &grant).await;
        assert_eq!(resp.status().as_u16(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["applied"], applied, "{body}");
        assert_eq!(body["account"]["balance"], 25);
    }
    let other = json!({"kind": "grant", "amount": 26, "reason": "welcome"});
    let resp = change_credits(&app, &user.to_string(), Some("g-1"), &other).await;
    assert_error(resp, 422, "idempotency_key_reused").await;

    app.enqueued(&token_for(user), "video_high").await;
    let mine = own_credits(&app, user).await;
    assert_eq!(mine["enforced"], true);
    assert_eq!(mine["tenant"], user.to_string());
    assert_eq!(
        mine["account"],
        json!({"balance": 25, "held": 5, "available": 20})
    );
    let kinds: Vec<&str> = mine["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["hold", "grant"], "newest first");

    let theirs: Value = app
        .admin_get(&format!("/admin/tenants/{user}/credits"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["account"], mine["account"]);
    assert_eq!(theirs["ledger"], mine["ledger"]);
}

#[tokio::test]
async fn an_adjustment_that_would_take_what_jobs_hold_is_refused_with_409() {
    let app = with_credits(5).await;
    let user = Uuid::new_v4();
    app.enqueued(&token_for(user), "video_fast").await;
    let take = json!({"kind": "adjustment", "amount": -3, "reason": "refund reversal"});
    let resp = change_credits(&app, &user.to_string(), Some("a-1"), &take).await;
    assert_error(resp, 409, "would_overdraw").await;
    assert_eq!(account(&app, &user).await, (5, 3));
    let take = json!({"kind": "adjustment", "amount": -2, "reason": "refund reversal"});
    let resp = change_credits(&app, &user.to_string(), Some("a-2"), &take).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(account(&app, &user).await, (3, 3));
}

#[tokio::test]
async fn a_bad_credit_change_is_refused_with_its_reason_and_writes_nothing() {
    let app = with_credits(0).await;
    let tenant = "org-1";
    let ok = json!({"kind": "grant", "amount": 1, "reason": "r"});
    assert_error(
        change_credits(&app, tenant, None, &ok).await,
        400,
        "idempotency_key_required",
    )
    .await;
    for bad in [
        json!([]),
        json!({"kind": "gift", "amount": 1, "reason": "r"}),
        json!({"kind": "grant", "amount": 0, "reason": "r"}),
        json!({"kind": "grant", "amount": -1, "reason": "r"}),
        json!({"kind": "grant", "amount": 1.5, "reason": "r"}),
        json!({"kind": "grant", "amount": 1_000_000_001_i64, "reason": "r"}),
        json!({"kind": "grant", "amount": "1", "reason": "r"}),
        json!({"kind": "grant", "amount": 1, "reason": ""}),
        json!({"kind": "grant", "amount": 1, "reason": "nul \u{0}"}),
        json!({"kind": "grant", "amount": 1, "reason": "x".repeat(501)}),
        json!({"kind": "grant", "amount": 1}),
        json!({"kind": "grant", "amount": 1, "reason": "r", "extra": true}),
    ] {
        let resp = change_credits(&app, tenant, Some("k"), &bad).await;
        assert_error(resp, 400, "invalid_credit_change").await;
    }
    let resp = change_credits(&app, "bad tenant!", Some("k"), &ok).await;
    assert_error(resp, 400, "invalid_tenant").await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_accounts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn usage_is_read_by_day_and_type_and_a_bad_query_is_a_400() {
    let app = with_credits(10).await;
    let user = Uuid::new_v4();
    let id = app.enqueued(&token_for(user), "sdxl_image_fast").await;
    // A worker's attempt, as the callback service records it, then the completion.
    sqlx::query(
        "SELECT gpuq_finish_attempt(j, 1, 'completed', 'w', 'L4', now() - interval '2 seconds') \
         FROM jobs j WHERE id = $1",
    )
    .bind(id.as_uuid())
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("UPDATE jobs SET status = 'completed', completed_at = now() WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&app.db)
        .await
        .unwrap();

    let mine: Value = app
        .http
        .get(app.url("/v1/usage?days=7"))
        .bearer_auth(token_for(user))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &mine["usage"][0];
    assert_eq!(mine["days"], 7);
    assert_eq!(row["jobType"], "sdxl_image_fast");
    assert_eq!(
        (row["jobs"].as_i64(), row["attempts"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(row["gpuSeconds"].as_f64().unwrap() >= 2.0, "{row}");
    assert_eq!(row["credits"], 1);

    let all: Value = app.admin_get("/admin/usage").await.json().await.unwrap();
    assert_eq!(all["usage"], mine["usage"]);
    let none: Value = app
        .admin_get("/admin/usage?tenant=someone-else")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["usage"], json!([]));

    for bad in ["days=0", "days=367", "days=x", "other=1"] {
        let resp = app.admin_get(&format!("/admin/usage?{bad}")).await;
        assert_error(resp, 400, "invalid_query").await;
    }
    let resp = app
        .http
        .get(app.url("/v1/usage?tenant=x"))
        .bearer_auth(token_for(user))
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "invalid_query").await;
}

#[tokio::test]
async fn an_account_that_differs_from_its_ledger_is_reported_by_the_reconciler() {
    let app = spawn_app_with(|s| {
        s.credits.enabled = true;
        s.credits.starting_grant = 10;
        s.queue.reconcile_interval_ms = 200;
    })
    .await;
    let user = Uuid::new_v4();
    app.enqueued(&token_for(user), "image_fast").await;
    let gauge = || async {
        let text = app.admin_get("/metrics").await.text().await.unwrap();
        text.lines()
            .find(|l| l.starts_with("gpuq_credit_violations "))
            .map(str::to_owned)
    };
    // A write that bypasses the ledger: the next check sees it.
    sqlx::query("UPDATE credit_accounts SET balance = balance + 5, updated_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    let mut seen = None;
    for _ in 0..50 {
        seen = gauge().await;
        if seen.as_deref() == Some("gpuq_credit_violations 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.as_deref(), Some("gpuq_credit_violations 1"));
    assert_eq!(violations(&app).await.len(), 1, "the view agrees");
}

#[tokio::test]
async fn the_ledger_check_reads_only_new_entries_and_keeps_reporting_a_wrong_account() {
    use gpuq_dispatcher::credits::check::LedgerCheck;
    let app = with_credits(0).await;
    // An account whose history is older than a checkpoint's settling time.
    sqlx::query(
        "INSERT INTO credit_accounts (tenant, balance, updated_at) \
         VALUES ('old-tenant', 40, now() - interval '2 hours')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credit_ledger (tenant, kind, balance_delta, held_delta, reason, created_at) \
         VALUES ('old-tenant', 'grant', 30, 0, 'a', now() - interval '2 hours'), \
                ('old-tenant', 'grant', 10, 0, 'b', now() - interval '2 hours')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let check = LedgerCheck::default();
    let window = Duration::from_secs(3 * 3600);
    assert!(check.pass(&app.db, window).await.unwrap().is_empty());

    // New entries after the checkpoint are added to it.
    let grant = json!({"kind": "grant", "amount": 5, "reason": "more"});
    let resp = change_credits(&app, "old-tenant", Some("k-1"), &grant).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(check.pass(&app.db, window).await.unwrap().is_empty());

    // A write that bypasses the ledger is found ...
    sqlx::query("UPDATE credit_accounts SET balance = balance + 1, updated_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    let first = check.pass(&app.db, window).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("old-tenant"), "{first:?}");
    // ... and still reported once the account has long stopped changing.
    sqlx::query("UPDATE credit_accounts SET updated_at = now() - interval '2 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let again = check.pass(&app.db, window).await.unwrap();
    assert_eq!(again, first, "still wrong, still reported");

    // Put right (by an adjustment that matches the ledger), it clears.
    sqlx::query("UPDATE credit_accounts SET balance = balance - 1")
        .execute(&app.db)
        .await
        .unwrap();
    assert!(check.pass(&app.db, window).await.unwrap().is_empty());
}
