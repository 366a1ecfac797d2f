//! agent2_fault_proxy: a test tool (tests/agent2/test_plugin_desync.py), not shipped. It
//! stands where agent 2 expects a plugin executable, starts the real plugin behind it on a
//! socket of its own, and relays the frames both ways, so a real agent and the real plugin
//! talk through it. An export request with a parameter equal to `LS_FAULT_TRIGGER`
//! (default `inject-desync`) is not relayed; instead the proxy does `LS_FAULT_MODE`:
//!
//! - `pass` (default): sends the plugin a header with a 4 GiB length, as a desynchronised
//!   stream would, and then mirrors whatever the plugin does (closes, exits);
//! - `close-exit`: closes the agent connection and exits at once (the plugin too);
//! - `close-stay`: closes the agent connection and lives on until its parent (the agent)
//!   goes away.
//!
//! Those two are how the agents' reactions to a plugin that ends its session were
//! measured (docs/agent2.md); the plugin is then the proxy's child, and its peer check
//! sees the proxy (its parent) at the other end.
//!
//! Usage, as the agent runs plugins: `agent2_fault_proxy SOCKET true|false`, with
//! `LS_FAULT_PLUGIN` the real plugin's path.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{exit, Command};
use std::time::Duration;
use std::{env, fs, thread};

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: agent2_fault_proxy SOCKET true|false");
        exit(2);
    }
    linux_status::os::ignore_stop_signals();
    let plugin = env::var("LS_FAULT_PLUGIN").expect("LS_FAULT_PLUGIN");
    let trigger = format!(
        "\"{}\"",
        env::var("LS_FAULT_TRIGGER").unwrap_or_else(|_| "inject-desync".into())
    );
    let mode = env::var("LS_FAULT_MODE").unwrap_or_else(|_| "pass".into());
    let parent = std::os::unix::process::parent_id();

    let dir = env::temp_dir().join(format!("ls-fault-proxy-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("proxy folder");
    let inner_path = dir.join("plugin.sock");
    let listener = UnixListener::bind(&inner_path).expect("proxy socket");
    let agent = UnixStream::connect(&args[1]).expect("agent socket");
    let mut child = Command::new(&plugin)
        .arg(&inner_path)
        .arg(&args[2])
        .spawn()
        .expect("start the plugin");
    let (inner, _) = listener.accept().expect("plugin connection");
    let _ = fs::remove_dir_all(&dir);

    // The agent going away ends the proxy, and so its plugin (which watches its parent).
    thread::spawn(move || loop {
        if std::os::unix::process::parent_id() != parent {
            exit(0);
        }
        thread::sleep(Duration::from_millis(200));
    });
    // Plugin to agent: bytes as they come; the plugin closing closes the agent side.
    {
        let (mut from, mut to) = (inner.try_clone().unwrap(), agent.try_clone().unwrap());
        thread::spawn(move || {
            let mut buffer = [0u8; 65536];
            while let Ok(n) = from.read(&mut buffer) {
                if n == 0 || to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
        });
    }
    // The plugin exiting ends the proxy with its status: the agent sees its plugin exit.
    thread::spawn(move || {
        let status = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
        exit(status);
    });
    // Agent to plugin: frame by frame, watching for the trigger.
    let (mut from, mut to) = (agent.try_clone().unwrap(), inner);
    loop {
        let mut header = [0u8; 8];
        if from.read_exact(&mut header).is_err() {
            let _ = to.shutdown(Shutdown::Write);
            break;
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; len];
        if from.read_exact(&mut payload).is_err() {
            break;
        }
        let triggered = payload
            .windows(trigger.len())
            .any(|w| w == trigger.as_bytes());
        if !triggered {
            if to.write_all(&header).and(to.write_all(&payload)).is_err() {
                break;
            }
            continue;
        }
        match mode.as_str() {
            "close-exit" => exit(0),
            "close-stay" => {
                let _ = agent.shutdown(Shutdown::Both);
                loop {
                    thread::sleep(Duration::from_secs(3600));
                }
            }
            _ => {
                let _ = to.write_all(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
            }
        }
    }
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
