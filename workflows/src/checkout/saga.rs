//! Compensations recorded after each completed step, run newest first when a later step fails.

use futures::future::LocalBoxFuture;

#[derive(Default)]
pub struct Saga {
    compensations: Vec<(&'static str, LocalBoxFuture<'static, Result<(), String>>)>,
}

impl Saga {
    /// Records how to undo a step that has completed.
    pub fn push(&mut self, name: &'static str, undo: LocalBoxFuture<'static, Result<(), String>>) {
        self.compensations.push((name, undo));
    }

    /// Forgets the compensations: the saga succeeded.
    pub fn commit(&mut self) {
        self.compensations.clear();
    }

    /// Runs the compensations newest first. A failing compensation is reported and the rest
    /// still run; each activity retries on its own before giving up.
    pub async fn compensate(&mut self) -> Vec<(&'static str, String)> {
        let mut failures = Vec::new();
        while let Some((name, undo)) = self.compensations.pop() {
            if let Err(err) = undo.await {
                failures.push((name, err));
            }
        }
        failures
    }
}
