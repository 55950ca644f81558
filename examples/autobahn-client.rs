//! Drives the Autobahn TestSuite's fuzzing server with the wsx client:
//! getCaseCount, runCase for each case (echoing every message), then
//! updateReports.
//!
//! ```sh
//! pid=$(../shared/autobahn/fuzzingserver --background out/ab-client)
//! cargo run --release -p wsx --example autobahn-client -- ws://127.0.0.1:9001
//! kill $pid; ../shared/autobahn/summarize out/ab-client
//! ```

use wsx::Message;

const AGENT: &str = "wsx";

async fn run_case(base: &str, case: u32) -> wsx::Result<()> {
    let (mut ws, _) = wsx::connect(format!("{base}/runCase?case={case}&agent={AGENT}")).await?;
    while let Some(msg) = ws.recv().await {
        if let m @ (Message::Text(_) | Message::Binary(_)) = msg? {
            ws.feed(m).await?;
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> wsx::Result<()> {
    let base = std::env::args().nth(1).unwrap_or_else(|| "ws://127.0.0.1:9001".into());
    let (mut ws, _) = wsx::connect(format!("{base}/getCaseCount")).await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(Message::Text(t))) => t.trim().parse().map_err(|_| wsx::Error::Url(format!("bad case count {t}")))?,
        other => panic!("expected the case count, got {other:?}"),
    };
    while ws.recv().await.is_some() {}
    println!("running {count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(&base, case).await {
            eprintln!("case {case}: {e}");
        }
    }
    let (mut ws, _) = wsx::connect(format!("{base}/updateReports?agent={AGENT}")).await?;
    while ws.recv().await.is_some() {}
    println!("reports updated");
    Ok(())
}
