//! Test control over a Unix socket: one command per line, one reply line.
//!
//! ```text
//! touch            grant one touch (consumed by the next operation that needs touch,
//!                  whether it is already waiting or arrives later)
//! status           "present=1 waiting=9c grants=0 auto_touch=0"
//! remove | insert  pull the card out of the reader / put it back (the vpcd
//!                  connection is closed / reopened, pcscd sees removal/insertion)
//! auto-touch on|off  every touch request is granted at once
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    present: bool,
    waiting: Option<u8>,
    grants: u32,
    last_touch: Option<Instant>,
    auto_touch: bool,
}

pub struct Control {
    state: Mutex<State>,
    cv: Condvar,
}

/// Outcome of waiting for a touch.
pub enum Touch {
    Given,
    TimedOut,
}

impl Control {
    pub fn new(auto_touch: bool) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                present: true,
                auto_touch,
                ..State::default()
            }),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn present(&self) -> bool {
        self.lock().present
    }

    /// Blocks until a touch is granted or `timeout` passes. `cached`: a touch
    /// within the last 15 s counts (YubiKey "cached" touch policy).
    pub fn wait_touch(&self, slot: u8, cached: bool, timeout: Duration) -> Touch {
        let mut st = self.lock();
        if st.auto_touch {
            st.last_touch = Some(Instant::now());
            return Touch::Given;
        }
        if cached
            && st
                .last_touch
                .is_some_and(|t| t.elapsed() < Duration::from_secs(15))
        {
            return Touch::Given;
        }
        eprintln!("vyubikey: slot {slot:02x} is waiting for touch");
        st.waiting = Some(slot);
        let deadline = Instant::now() + timeout;
        loop {
            if st.grants > 0 {
                st.grants -= 1;
                st.waiting = None;
                st.last_touch = Some(Instant::now());
                return Touch::Given;
            }
            let now = Instant::now();
            if now >= deadline || !st.present {
                st.waiting = None;
                return Touch::TimedOut;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn command(&self, line: &str) -> String {
        let mut st = self.lock();
        let reply = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["touch"] => {
                st.grants += 1;
                if st.waiting.is_some() {
                    "ok touched".to_string()
                } else {
                    "ok armed".to_string()
                }
            }
            ["status"] => format!(
                "present={} waiting={} grants={} auto_touch={}",
                st.present as u8,
                st.waiting.map(|s| format!("{s:02x}")).unwrap_or("-".into()),
                st.grants,
                st.auto_touch as u8
            ),
            ["remove"] => {
                st.present = false;
                "ok".into()
            }
            ["insert"] => {
                st.present = true;
                "ok".into()
            }
            ["auto-touch", "on"] => {
                st.auto_touch = true;
                "ok".into()
            }
            ["auto-touch", "off"] => {
                st.auto_touch = false;
                "ok".into()
            }
            _ => format!("error unknown command {line:?}"),
        };
        drop(st);
        self.cv.notify_all();
        reply
    }

    /// Serves the control socket at `path` on a background thread.
    pub fn listen(self: &Arc<Self>, path: &Path) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let me = Arc::clone(&me);
                std::thread::spawn(move || {
                    let Ok(mut w) = conn.try_clone() else { return };
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { break };
                        let reply = me.command(line.trim());
                        if writeln!(w, "{reply}").is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(())
    }
}
