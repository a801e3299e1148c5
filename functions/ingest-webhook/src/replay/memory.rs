//! The in-memory twin of the replay guard.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use busline::signature::SingleUse;

use super::{ReplayError, ReplayGuard};

/// Admitted signatures in a map; shared by clones' owners through `&`.
#[derive(Debug, Default)]
pub struct InMemoryReplayGuard {
    admitted: Mutex<HashMap<String, String>>,
}

impl InMemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many signatures it remembers.
    pub fn len(&self) -> usize {
        self.admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// True when it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    async fn admit(&self, signature: &SingleUse, delivery_id: &str) -> Result<(), ReplayError> {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        match admitted.get(&signature.token) {
            Some(first) if first != delivery_id => Err(ReplayError::Replayed),
            Some(_) => Ok(()),
            None => {
                admitted.insert(signature.token.clone(), delivery_id.to_owned());
                Ok(())
            }
        }
    }
}
