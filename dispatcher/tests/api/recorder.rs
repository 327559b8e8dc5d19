//! `jobs_db::record_batch` (the `gpuq_record_jobs` function) on batches the HTTP tests
//! cannot force: several jobs of one user, one idempotency key twice, users out of order,
//! a refused batch.

use chrono::{SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

use gpuq_dispatcher::jobs_db::{self, NewJob, RecordRules, Recorded};
use gpuq_dispatcher::recorder::write_batch;

use crate::helpers::*;

fn job(user: Uuid, key: Option<&str>) -> NewJob {
    NewJob {
        id: Uuid::new_v4(),
        user_id: user,
        job_type: "sdxl_image_fast",
        queue: "sdxl_queue".into(),
        prompt: "batch".into(),
        metadata: json!({"prompt": "batch"}),
        config: json!({}),
        project_id: None,
        video_id: None,
        image_id: None,
        credits: 1,
        max_attempts: 3,
        created_at: Utc::now().trunc_subsecs(6),
        envelope: json!({}),
        idempotency_key: key.map(str::to_owned),
        request_hash: None,
        tenant: user.to_string(),
        price: None,
        per_gpu_second: None,
        webhook: None,
    }
}

fn limit(max_active: i64) -> RecordRules {
    RecordRules {
        max_active,
        starting_grant: 0,
    }
}

async fn rows_of(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE user_id = $1")
        .bind(user)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_batch_applies_the_active_limit_job_by_job_and_answers_in_input_order() {
    let app = spawn_app().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // Interleaved and unsorted users; the function locks in user order but the answers
    // come back in ours.
    let jobs = [
        job(b, None),
        job(a, None),
        job(b, None),
        job(a, None),
        job(b, None),
    ];
    let refs: Vec<&NewJob> = jobs.iter().collect();
    let answers = jobs_db::record_batch(&app.db, &refs, limit(2))
        .await
        .unwrap();
    assert_eq!(
        answers,
        [
            Recorded::Inserted,
            Recorded::Inserted,
            Recorded::Inserted,
            Recorded::Inserted,
            Recorded::TooManyActive { active: 2 },
        ]
    );
    assert_eq!((rows_of(&app, a).await, rows_of(&app, b).await), (2, 2));
    // The limit counts what earlier batches committed too.
    let again = job(a, None);
    let answers = jobs_db::record_batch(&app.db, &[&again], limit(2))
        .await
        .unwrap();
    assert_eq!(answers, [Recorded::TooManyActive { active: 2 }]);
}

#[tokio::test]
async fn one_idempotency_key_twice_in_a_batch_records_one_job() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let (first, second) = (job(user, Some("k")), job(user, Some("k")));
    let other_user = job(Uuid::new_v4(), Some("k"));
    let answers = jobs_db::record_batch(&app.db, &[&first, &second, &other_user], limit(20))
        .await
        .unwrap();
    assert_eq!(
        answers,
        [Recorded::Inserted, Recorded::KeyTaken, Recorded::Inserted]
    );
    assert_eq!(rows_of(&app, user).await, 1);
    let holder: Uuid =
        sqlx::query_scalar("SELECT job_id FROM idempotency_keys WHERE user_id = $1 AND key = 'k'")
            .bind(user)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(holder, first.id);
}

#[tokio::test]
async fn a_refused_batch_writes_nothing() {
    let app = spawn_app().await;
    let good = job(Uuid::new_v4(), None);
    let mut bad = job(Uuid::new_v4(), None);
    bad.max_attempts = 0; // violates the CHECK on max_attempts
    let err = jobs_db::record_batch(&app.db, &[&good, &bad], limit(20))
        .await
        .unwrap_err();
    assert!(err.as_database_error().is_some(), "{err}");
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn a_refused_batch_is_retried_job_by_job_so_only_the_bad_job_fails() {
    let app = spawn_app().await;
    let (first, last) = (job(Uuid::new_v4(), None), job(Uuid::new_v4(), None));
    let mut bad = job(Uuid::new_v4(), None);
    bad.max_attempts = 0; // violates the CHECK on max_attempts
    let answers = write_batch(&app.db, limit(20), &[first.clone(), bad, last.clone()]).await;
    assert!(matches!(answers[0], Ok(Recorded::Inserted)), "{answers:?}");
    assert!(
        answers[1]
            .as_ref()
            .is_err_and(|e| e.as_database_error().is_some()),
        "{answers:?}"
    );
    assert!(matches!(answers[2], Ok(Recorded::Inserted)), "{answers:?}");
    assert_eq!(app.job_count().await, 2);
    assert_eq!(
        (
            rows_of(&app, first.user_id).await,
            rows_of(&app, last.user_id).await
        ),
        (1, 1)
    );
}

fn priced(user: Uuid, price: i64) -> NewJob {
    NewJob {
        price: Some(price),
        ..job(user, None)
    }
}

async fn held(app: &TestApp, user: Uuid) -> (i64, i64) {
    sqlx::query_as("SELECT balance, held FROM credit_accounts WHERE tenant = $1")
        .bind(user.to_string())
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_one_tenant_batch_gives_back_the_price_of_a_job_a_limit_refused() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    // An account already: the batch takes the one-statement path.
    sqlx::query("SELECT gpuq_credit_account($1, 10)")
        .bind(user.to_string())
        .execute(&app.db)
        .await
        .unwrap();
    let rules = RecordRules {
        max_active: 1,
        starting_grant: 0,
    };
    let (a, b) = (priced(user, 2), priced(user, 2));
    let answers = jobs_db::record_batch(&app.db, &[&a, &b], rules)
        .await
        .unwrap();
    assert_eq!(
        answers,
        [Recorded::Inserted, Recorded::TooManyActive { active: 1 }]
    );
    assert_eq!(
        held(&app, user).await,
        (10, 2),
        "only the recorded job holds"
    );
}

#[tokio::test]
async fn a_one_tenant_batch_it_cannot_cover_whole_holds_job_by_job_in_order() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    let rules = RecordRules {
        max_active: 100,
        starting_grant: 5,
    };
    let jobs = [priced(user, 2), priced(user, 2), priced(user, 2)];
    let refs: Vec<&NewJob> = jobs.iter().collect();
    let answers = jobs_db::record_batch(&app.db, &refs, rules).await.unwrap();
    assert_eq!(answers[..2], [Recorded::Inserted, Recorded::Inserted]);
    match answers[2] {
        Recorded::InsufficientCredits(s) => {
            assert_eq!((s.balance, s.held, s.available, s.price), (5, 4, 1, 2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(held(&app, user).await, (5, 4));
    assert_eq!(rows_of(&app, user).await, 2);
}

#[tokio::test]
async fn a_batch_of_tenants_without_accounts_is_refused_whole_and_recorded_job_by_job() {
    let app = spawn_app().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let rules = RecordRules {
        max_active: 100,
        starting_grant: 3,
    };
    let jobs = [priced(a, 1), priced(b, 1)];
    let refs: Vec<&NewJob> = jobs.iter().collect();
    // Creating accounts inside a batch that already holds others could close a lock cycle.
    let refused = jobs_db::record_batch(&app.db, &refs, rules).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(rows_of(&app, a).await + rows_of(&app, b).await, 0);
    // The recorder then records them one by one, each creating its own account.
    let answers = write_batch(&app.db, rules, &jobs).await;
    assert!(
        answers.iter().all(|r| matches!(r, Ok(Recorded::Inserted))),
        "{answers:?}"
    );
    assert_eq!(held(&app, a).await, (3, 1));
    assert_eq!(held(&app, b).await, (3, 1));
}

async fn account_with(app: &TestApp, user: Uuid, credits: i64) {
    sqlx::query("SELECT gpuq_credit_account($1, $2)")
        .bind(user.to_string())
        .bind(credits)
        .execute(&app.db)
        .await
        .unwrap();
}

async fn no_violations(app: &TestApp) {
    let found: Vec<String> = sqlx::query_scalar("SELECT detail FROM credit_violations")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[tokio::test]
async fn a_one_tenant_batch_its_account_cannot_cover_whole_falls_back_to_job_by_job() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    account_with(&app, user, 3).await;
    let rules = RecordRules {
        max_active: 100,
        starting_grant: 0,
    };
    let (a, b) = (priced(user, 2), priced(user, 2));
    let answers = jobs_db::record_batch(&app.db, &[&a, &b], rules)
        .await
        .unwrap();
    assert_eq!(answers[0], Recorded::Inserted);
    assert!(matches!(answers[1], Recorded::InsufficientCredits(_)));
    assert_eq!(held(&app, user).await, (3, 2));
    no_violations(&app).await;
}

#[tokio::test]
async fn a_one_tenant_batch_gives_back_the_price_of_a_job_whose_key_was_taken() {
    let app = spawn_app().await;
    let user = Uuid::new_v4();
    account_with(&app, user, 10).await;
    let rules = RecordRules {
        max_active: 100,
        starting_grant: 0,
    };
    let first = NewJob {
        price: Some(3),
        ..job(user, Some("same-key"))
    };
    let second = NewJob {
        price: Some(3),
        ..job(user, Some("same-key"))
    };
    let answers = jobs_db::record_batch(&app.db, &[&first, &second], rules)
        .await
        .unwrap();
    assert_eq!(answers, [Recorded::Inserted, Recorded::KeyTaken]);
    assert_eq!(held(&app, user).await, (10, 3));
    no_violations(&app).await;
}
