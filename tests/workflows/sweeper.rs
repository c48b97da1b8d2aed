use chrono::{Duration as Span, Utc};
use sea_orm::TransactionTrait;
use temporalio_client::{WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHistory, WorkflowStartOptions};
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use uuid::Uuid;

use emporium_entities::{
    entity::users::Role,
    store::{catalog, checkouts, inventory, users},
};
use emporium_tests::{
    TestDatabase, count,
    worker::{TestWorker, temporal_client, unique_task_queue},
};
use emporium_workflows::sweeper::{
    ReservationSweeperWorkflow,
    contract::{SweepInput, schedule_id},
};

const HISTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/histories/sweeper_released.json");

async fn reserve(database: &TestDatabase, owner: &str, product: i64, quantity: i32, expires_in: Span) {
    let tx = database.db.begin().await.unwrap();
    let short =
        inventory::reserve_lines(&tx, owner, vec![inventory::ReserveLine { product_id: product, quantity }], Utc::now() + expires_in)
            .await
            .unwrap();
    assert!(short.is_empty());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_sweeper_releases_orphaned_expired_reservations_only() {
    let database = TestDatabase::create().await;
    let tx = database.db.begin().await.unwrap();
    let category = catalog::create_category(&tx, None, "Sweep", "sweep").await.unwrap();
    let product = catalog::create_product(
        &tx,
        catalog::NewProduct {
            sku: "SWEEP-1".into(),
            title: "Broom".into(),
            description: String::new(),
            brand: "Acme".into(),
            category_id: category.id,
            price_minor: 100,
            currency: "USD".into(),
            attributes: serde_json::json!({}),
            image_keys: vec![],
            initial_stock: 10,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // a checkout whose workflow was lost: expired two minutes ago, nobody will release it
    let orphan = format!("checkout:{}", Uuid::new_v4());
    reserve(&database, &orphan, product.id, 3, Span::minutes(-2)).await;
    // still within its reservation: must stay
    let waiting = format!("checkout:{}", Uuid::new_v4());
    reserve(&database, &waiting, product.id, 2, Span::minutes(5)).await;
    // expired, but its checkout is being paid right now: must stay
    let user = users::insert_user(&database.db, "payer@example.com", "x", Role::Customer).await.unwrap();
    let paying_id = Uuid::new_v4();
    checkouts::insert(
        &database.db,
        &checkouts::CheckoutRecord {
            id: paying_id,
            user_id: user.id,
            status: "PAYING".into(),
            currency: "USD".into(),
            subtotal_minor: 100,
            tax_minor: 0,
            shipping_minor: 0,
            total_minor: 100,
            lines: serde_json::json!([]),
            reserved_until: Some(Utc::now() - Span::minutes(2)),
            order_id: None,
            failure_code: None,
        },
    )
    .await
    .unwrap();
    reserve(&database, &format!("checkout:{paying_id}"), product.id, 1, Span::minutes(-2)).await;
    let stock = |column: &'static str| {
        let db = database.db.clone();
        async move { count(&db, &format!("SELECT {column}::bigint AS n FROM inventory WHERE product_id = {}", product.id)).await }
    };
    assert_eq!((stock("available").await, stock("reserved").await), (4, 6));

    let queue = unique_task_queue();
    let worker = TestWorker::start(&queue, database.db.clone());
    let client = temporal_client().await;
    let handle = client
        .start_workflow(
            ReservationSweeperWorkflow::run,
            SweepInput { grace_secs: 0 },
            WorkflowStartOptions::new(queue.clone(), format!("reservation-sweep:{}", Uuid::new_v4())).build(),
        )
        .await
        .unwrap();
    let output = handle.get_result(WorkflowGetResultOptions::default()).await.expect("sweep completes");
    assert_eq!(output.released, vec![orphan.clone()]);
    assert_eq!((stock("available").await, stock("reserved").await), (7, 3), "the orphan's 3 units are back");
    let released =
        count(&database.db, &format!("SELECT COUNT(*) AS n FROM inventory_reservations WHERE owner = '{orphan}' AND status = 'RELEASED'"))
            .await;
    assert_eq!(released, 1);
    if std::env::var_os("EMPORIUM_RECORD_HISTORIES").is_some() {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await.unwrap();
        std::fs::write(HISTORY, json).unwrap();
    }
    worker.stop();
}

#[tokio::test]
async fn the_sweeper_schedule_is_created_once_per_task_queue() {
    let client = temporal_client().await;
    let queue = unique_task_queue();
    assert!(emporium_worker::ensure_sweeper_schedule(&client, &queue).await.unwrap(), "created");
    assert!(!emporium_worker::ensure_sweeper_schedule(&client, &queue).await.unwrap(), "already there");
    let schedule = client.get_schedule_handle(schedule_id(&queue));
    schedule.describe(Default::default()).await.expect("the schedule exists");
    schedule.delete(Default::default()).await.expect("clean up");
}

#[tokio::test]
async fn committed_sweeper_history_replays_with_the_current_code() {
    let bytes = std::fs::read(HISTORY).expect("committed history exists");
    let options = WorkflowReplayerOptions::new().register_workflow::<ReservationSweeperWorkflow>().unwrap().build();
    WorkflowReplayer::new(options)
        .unwrap()
        .replay_workflow(WorkflowHistory::from_json(&bytes).unwrap())
        .await
        .expect("sweeper history replays");
}
