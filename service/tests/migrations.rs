//! The migrations apply to an empty database and their constraints refuse duplicates.

use sqlx::{Connection, PgConnection};

use gpuq_service::testkit::migrated_database;

async fn fresh_db() -> PgConnection {
    PgConnection::connect(&migrated_database().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn images_cannot_be_recorded_twice_for_one_index() {
    let mut db = fresh_db().await;
    let job = uuid::Uuid::now_v7();
    let user = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO jobs (id, user_id, job_type, queue, max_attempts) VALUES ($1, $2, 'sdxl_image_fast', 'sdxl_queue', 3)")
        .bind(job)
        .bind(user)
        .execute(&mut db)
        .await
        .unwrap();
    let insert = "INSERT INTO images (job_id, image_index, user_id, bucket, storage_path) VALUES ($1, $2, $3, 'b', $4)";
    sqlx::query(insert)
        .bind(job)
        .bind(0)
        .bind(user)
        .bind("k0")
        .execute(&mut db)
        .await
        .unwrap();
    let dup = sqlx::query(insert)
        .bind(job)
        .bind(0)
        .bind(user)
        .bind("k1")
        .execute(&mut db)
        .await;
    assert!(dup.is_err(), "second row for index 0 must be refused");
    let bad_status = sqlx::query("UPDATE jobs SET status = 'done' WHERE id = $1")
        .bind(job)
        .execute(&mut db)
        .await;
    assert!(bad_status.is_err(), "unknown status must be refused");
    let finished_without_time = sqlx::query("UPDATE jobs SET status = 'completed' WHERE id = $1")
        .bind(job)
        .execute(&mut db)
        .await;
    assert!(
        finished_without_time.is_err(),
        "a finished job needs completed_at"
    );
}
