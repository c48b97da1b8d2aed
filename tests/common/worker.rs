//! A store worker running in-process on its own task queue, on a thread of its own because
//! the worker future is not `Send`.

use std::{sync::mpsc, thread::JoinHandle};

use sea_orm::DatabaseConnection;
use temporalio_client::Client;
use temporalio_sdk::Runtime;
use uuid::Uuid;

use emporium_worker::{WorkerDependencies, build_worker, connect_temporal};

pub fn temporal_address() -> String {
    std::env::var("TEMPORAL_ADDRESS").unwrap_or_else(|_| "http://127.0.0.1:7233".to_owned())
}

pub fn temporal_namespace() -> String {
    std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "emporium".to_owned())
}

pub async fn temporal_client() -> Client {
    connect_temporal(&temporal_address(), &temporal_namespace(), "emporium-tests")
        .await
        .expect("Temporal dev server is reachable (scripts/test.sh starts one)")
}

pub fn unique_task_queue() -> String {
    format!("test-{}", Uuid::new_v4().simple())
}

/// A running worker; stopping (or dropping) it shuts it down and waits for it.
pub struct TestWorker {
    pub task_queue: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestWorker {
    pub fn start(task_queue: &str, db: DatabaseConnection) -> Self {
        Self::start_with(task_queue, WorkerDependencies::sandbox(db))
    }

    /// A worker with chosen dependencies (a webhook, another gateway).
    pub fn start_with(task_queue: &str, deps: WorkerDependencies) -> Self {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let queue = task_queue.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let setup = async {
                    let client = temporal_client().await;
                    let core = Runtime::from_current_tokio(Default::default()).map_err(|e| e.to_string())?;
                    let worker = build_worker(&core, client, &queue, deps).map_err(|e| format!("{e:?}"))?;
                    Ok::<_, String>((core, worker))
                };
                let (_core, mut worker) = match setup.await {
                    Ok(parts) => parts,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let shutdown = worker.shutdown_handle();
                let _ = ready_tx.send(Ok(()));
                let run = worker.run();
                tokio::pin!(run);
                tokio::select! {
                    result = &mut run => result.expect("worker ran"),
                    _ = stop_rx => {
                        shutdown();
                        run.await.expect("worker shut down");
                    }
                }
            });
        });
        ready_rx.recv().expect("worker thread reports").expect("worker starts");
        Self { task_queue: task_queue.to_owned(), stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Shuts the worker down and waits until it has stopped.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A worker drains in-flight tasks before it stops; don't let a stuck one hang the
            // test run (a panicking test drops its worker mid-flight).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                eprintln!("test worker did not stop within 30 s; leaving it behind");
            }
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.stop_inner();
    }
}
