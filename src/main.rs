//! The `tessera` command: `serve`, `client`, `layout`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cli;

/// tessera: a compositing MCU video-conferencing server.
///
/// Participants join rooms with WebRTC, signaling over MQTT; the server
/// tiles everyone's video into one H.264 picture and mixes everyone's
/// audio (minus their own) into one Opus stream per participant.
#[derive(Parser)]
#[command(name = "tessera", version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (with an embedded MQTT broker unless --mqtt-url is given).
    Serve(Box<tessera::config::ServeArgs>),
    /// Join a room as one or more clients: send a test pattern and a tone,
    /// receive, record and measure the composite.
    Client(Box<cli::ClientArgs>),
    /// Check layout files, or render a preview of one.
    #[command(subcommand)]
    Layout(cli::LayoutCommand),
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    // One TLS crypto provider for the whole process (mqtts:// links).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match args.command {
        Command::Serve(serve) => cli::serve(*serve),
        Command::Client(client) => cli::client(*client),
        Command::Layout(cmd) => cli::layout(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Our logs at info; libraries when they warn. rumqttd logs ordinary
/// disconnects as errors, and webrtc-rs warns about routine races (packets
/// before DTLS is up, checks before the answer): quiet unless asked for.
const DEFAULT_LOG: &str = "warn,tessera=info,rumqttd=off,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error";

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
