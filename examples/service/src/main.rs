//! `rill-example-service [ADDR]`: the rate limiter of this crate's library on a TCP
//! address (default 127.0.0.1:7878). Try it with `nc 127.0.0.1 7878` and type client ids;
//! Ctrl-C stops the job (every request sent is answered first).

use rill_example_service::{Limits, Service};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let limits = Limits {
        burst: 10,
        per_minute: 60,
    };
    let service = Service::start(limits, 1)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("rate limiter on {addr}: one client id per line");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        Ok::<_, Box<dyn std::error::Error>>(service.serve(listener, shutdown).await?)
    })?;
    eprintln!("{report}");
    Ok(())
}
