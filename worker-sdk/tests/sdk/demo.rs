//! The demo worker: deterministic rendering, frame counts, and a full run on real Redis
//! writing real files.

use std::io::Cursor;
use std::time::Duration;

use crate::helpers::*;
use gpuq_schemas::{CallbackStatus, JobKind, JobType};
use gpuq_worker_sdk::demo::render::{render_gif, render_png};
use gpuq_worker_sdk::demo::{enhance_prompt, DemoHandler};
use gpuq_worker_sdk::LocalStorage;

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let reader = png::Decoder::new(Cursor::new(bytes)).read_info().unwrap();
    (reader.info().width, reader.info().height)
}

fn gif_frames(bytes: &[u8]) -> usize {
    let mut decoder = gif::DecodeOptions::new()
        .read_info(Cursor::new(bytes))
        .unwrap();
    let mut n = 0;
    while decoder.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    n
}

#[test]
fn the_same_prompt_and_seed_render_the_same_png_bytes() {
    let a = render_png("a red fox", 7, 0, 256, 147).unwrap();
    let b = render_png("a red fox", 7, 0, 256, 147).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, render_png("a red fox!", 7, 0, 256, 147).unwrap());
    assert_eq!(png_size(&a), (256, 147));
}

#[test]
fn the_gif_has_exactly_the_requested_frames_and_is_deterministic() {
    let a = render_gif("waves", 3, 83).unwrap();
    assert_eq!(gif_frames(&a), 83);
    assert_eq!(a, render_gif("waves", 3, 83).unwrap());
    assert_eq!(gif_frames(&render_gif("waves", 3, 5).unwrap()), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_worker_writes_every_output_and_reports_it() {
    let ns = namespace();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let mut workers = Vec::new();
    for queue in ["sdxl_queue", "wan_queue"] {
        let w = builder(&redis_url(), &ns, queue, &receiver)
            .concurrency(4)
            .storage(LocalStorage::new(dir.path()))
            .handler(DemoHandler {
                time_scale: 0.0,
                loads: None,
            })
            .build()
            .unwrap();
        workers.push(spawn(w));
    }
    let sdxl = open_queue(&redis_url(), &ns, "sdxl_queue").await;
    let wan = open_queue(&redis_url(), &ns, "wan_queue").await;
    let mut jobs = Vec::new();
    for t in JobType::ALL {
        let mut env = envelope(t);
        if t == JobType::SdxlImageHigh {
            env.config.num_images = 3;
        }
        let q = if t.spec().queue == "sdxl_queue" {
            &sdxl
        } else {
            &wan
        };
        enqueue(q, &env).await;
        jobs.push(env);
    }
    for env in &jobs {
        let done = receiver
            .wait_for(
                env.job_id,
                CallbackStatus::Completed,
                Duration::from_secs(20),
            )
            .await;
        let spec = env.job_type.spec();
        assert_eq!(
            done.outputs.len(),
            env.config.num_images as usize,
            "{}",
            env.job_type
        );
        for (i, out) in done.outputs.iter().enumerate() {
            let ext = if spec.kind == JobKind::Video {
                "gif"
            } else {
                "png"
            };
            assert_eq!(
                out.path,
                format!("{}/{}/{i}.{ext}", env.user_id, env.job_id)
            );
            assert_eq!(out.kind, Some(spec.kind));
            let bytes = std::fs::read(dir.path().join(&env.bucket).join(&out.path)).unwrap();
            match spec.kind {
                JobKind::Image => {
                    assert_eq!(out.seed, Some(42 + i as u64));
                    assert_eq!(png_size(&bytes), (out.width.unwrap(), out.height.unwrap()));
                    let again = render_png(
                        &env.prompt,
                        42,
                        i as u32,
                        out.width.unwrap(),
                        out.height.unwrap(),
                    )
                    .unwrap();
                    assert_eq!(bytes, again, "deterministic");
                }
                JobKind::Video => {
                    assert_eq!(gif_frames(&bytes), env.config.frames as usize);
                    assert!(out.duration_seconds.unwrap() > 0.0);
                }
            }
        }
        let expected = spec.enhance_prompt.then(|| enhance_prompt(&env.prompt));
        assert_eq!(done.enhanced_prompt, expected, "{}", env.job_type);
    }
    // Each worker advertised its concurrency as the queue's capacity (ETAs divide by it).
    for q in [&sdxl, &wan] {
        assert_eq!(q.stats().await.unwrap().live_slots, 4);
    }
    for (stop, run) in workers {
        stop.cancel();
        run.await.unwrap();
    }
}
