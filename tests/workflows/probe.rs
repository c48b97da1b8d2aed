use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory, WorkflowStartOptions};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use uuid::Uuid;

use emporium_tests::{
    TestDatabase,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_workflows::probe::{
    WorkerProbeWorkflow,
    contract::{ProbeInput, workflow_id},
};

const HISTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories/probe_completed.json");

#[tokio::test]
async fn the_worker_runs_the_probe_workflow_against_postgres() {
    let database = TestDatabase::create().await;
    let queue = unique_task_queue();
    let worker = TestWorker::start(&queue, database.db.clone());
    let client = temporal_client().await;

    let handle = client
        .start_workflow(
            WorkerProbeWorkflow::run,
            ProbeInput { note: "hello".to_owned() },
            WorkflowStartOptions::new(queue.clone(), workflow_id(&Uuid::new_v4().to_string())).build(),
        )
        .await
        .expect("start probe");
    let output = handle.get_result(WorkflowGetResultOptions::default()).await.expect("probe result");
    assert_eq!(output.note, "hello");
    assert!(output.database.starts_with("PostgreSQL"), "{}", output.database);

    // EMPORIUM_RECORD_HISTORIES=1 re-records the committed history (see README).
    if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.expect("history");
        std::fs::write(HISTORY, json).expect("write history");
    }
    worker.stop();
}

#[tokio::test]
async fn committed_probe_history_replays_with_the_current_code() {
    let bytes = std::fs::read(HISTORY).expect("committed history exists");
    let history = WorkflowHistory::from_json(&bytes).expect("SDK history JSON");
    let options = WorkflowReplayerOptions::new().register_workflow::<WorkerProbeWorkflow>().expect("register").build();
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    replayer.replay_workflow(history).await.expect("history replays without nondeterminism");
}
