//! One thread of idle priority (`SCHED_IDLE`) for the control thread's heavy and unhurried
//! work: loading and compiling a config (10,000 routes take a core for a tenth of a second)
//! and freeing the epochs it replaced. A shard that shares a core with it is never kept
//! waiting by that work; and being one long-lived thread, it reuses one allocator arena, so
//! memory freed after a reload is there for the next one rather than spread over a new
//! arena per reload.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Sender};

type Job = Box<dyn FnOnce() + Send>;

pub struct Background {
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn start() -> std::io::Result<Background> {
        let (jobs, inbox) = unbounded::<Job>();
        let thread = std::thread::Builder::new()
            .name("ringway-config".into())
            .spawn(move || {
                if let Err(e) = ringway_core::sys::idle_priority() {
                    tracing::debug!(error = %e, "could not lower the config thread's priority");
                }
                for job in inbox {
                    job();
                }
            })?;
        Ok(Background {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the background thread and waits for its result; on the calling thread
    /// if the background thread is gone.
    pub fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = bounded(1);
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        let job = match &self.jobs {
            Some(jobs) => match jobs.send(job) {
                Ok(()) => None,
                Err(returned) => Some(returned.0),
            },
            None => Some(job),
        };
        if let Some(job) = job {
            job();
        }
        // The job sends before it ends (with `panic = "abort"` it cannot end otherwise).
        result
            .recv()
            .unwrap_or_else(|_| unreachable!("a background job ended without its result"))
    }

    /// Runs `work` on the background thread without waiting (here if it is gone).
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        let job: Job = Box::new(work);
        match &self.jobs {
            Some(jobs) => {
                if let Err(returned) = jobs.send(job) {
                    (returned.0)();
                }
            }
            None => job(),
        }
    }
}

impl Drop for Background {
    /// Lets the jobs already sent finish.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_order_on_one_idle_thread() {
        let background = Background::start().unwrap();
        let name = || std::thread::current().name().map(str::to_owned);
        let first = background.run(name);
        let (tx, rx) = unbounded();
        for i in 0..3 {
            let tx = tx.clone();
            background.spawn(move || tx.send(i).unwrap());
        }
        // The scheduling policy: field 41 of /proc/thread-self/stat, 5 for SCHED_IDLE.
        let policy = background.run(|| {
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            after_name.split(' ').nth(38).unwrap().to_owned()
        });
        assert_eq!(first.as_deref(), Some("ringway-config"));
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(policy, "5", "SCHED_IDLE");
    }
}
