//! [`private_redis`]: a redis-server of a test's own, for what a shared Redis cannot show
//! (its client count, its code library coming and going, a restricted user).

use std::time::Duration;

/// Starts `redis-server` on a free port, without persistence; killed when the child drops.
/// Returns the child and the port once it accepts connections.
pub async fn private_redis() -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server starts");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server never answered on port {port}");
}
