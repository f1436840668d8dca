//! The driver's one timer: a `timerfd` on CLOCK_MONOTONIC, driven by tokio.
//!
//! tokio's own timer wheel has a resolution of one millisecond and rounds every
//! deadline up, which at 10 ms adverts is a 10 % late advert and a drifting
//! master. A timerfd wakes us within microseconds of the deadline instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A one-shot timer with sub-millisecond precision.
pub struct PreciseTimer {
    fd: AsyncFd<Fd>,
    armed_for: Option<Instant>,
}

impl PreciseTimer {
    /// Creates a disarmed timer; must be called inside a tokio runtime.
    pub fn new() -> io::Result<PreciseTimer> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the TimerFd owns its descriptor for as long as the AsyncFd lives.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(timer), Interest::READABLE)? };
        Ok(PreciseTimer {
            fd,
            armed_for: None,
        })
    }

    /// The deadline the timer is armed for.
    pub fn deadline(&self) -> Option<Instant> {
        self.armed_for
    }

    /// Arms the timer for `deadline`, or disarms it with `None`. A no-op when
    /// the deadline did not change.
    pub fn set(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        if deadline == self.armed_for {
            return Ok(());
        }
        self.armed_for = deadline;
        match deadline {
            None => self.fd.get_ref().0.unset()?,
            Some(at) => {
                // A zero expiration would disarm the timer: a due deadline fires in 1 µs.
                let wait = at
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_micros(1));
                self.fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(wait)),
                    TimerSetTimeFlags::empty(),
                )?;
            }
        }
        Ok(())
    }

    /// Waits until the armed deadline passes (forever when disarmed), then
    /// leaves the timer disarmed.
    pub async fn expired(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut count = [0u8; 8];
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut count).map_err(io::Error::from)
            }) {
                Ok(Ok(_)) => {
                    self.armed_for = None;
                    return Ok(());
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}
