//! The category tree in memory: search resolves a category filter to the ids below it without
//! asking Postgres on every request. Reloaded when the indexer sees a category change and when
//! a request names a category it does not know yet.

use std::collections::HashMap;

use sea_orm::ConnectionTrait;

use emporium_entities::{StoreError, store::catalog};

#[derive(Debug, Clone)]
struct Node {
    parent: Option<i64>,
    slug: String,
}

#[derive(Debug, Clone, Default)]
pub struct CategoryTree {
    nodes: HashMap<i64, Node>,
    by_slug: HashMap<String, i64>,
    children: HashMap<i64, Vec<i64>>,
}

impl CategoryTree {
    pub async fn load<C: ConnectionTrait>(db: &C) -> Result<Self, StoreError> {
        let all = catalog::list_categories(db).await?;
        Ok(Self::from_rows(all.into_iter().map(|c| (c.id, c.parent_id, c.slug))))
    }

    pub fn from_rows(rows: impl IntoIterator<Item = (i64, Option<i64>, String)>) -> Self {
        let mut tree = CategoryTree::default();
        for (id, parent, slug) in rows {
            tree.by_slug.insert(slug.clone(), id);
            if let Some(parent) = parent {
                tree.children.entry(parent).or_default().push(id);
            }
            tree.nodes.insert(id, Node { parent, slug });
        }
        tree
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A category by slug or numeric id.
    pub fn resolve(&self, key: &str) -> Option<i64> {
        match key.parse::<i64>() {
            Ok(id) => self.nodes.contains_key(&id).then_some(id),
            Err(_) => self.by_slug.get(key).copied(),
        }
    }

    pub fn slug(&self, id: i64) -> Option<&str> {
        self.nodes.get(&id).map(|n| n.slug.as_str())
    }

    /// `id` and every category below it.
    pub fn subtree(&self, id: i64) -> Vec<i64> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            if let Some(children) = self.children.get(&out[i]) {
                out.extend(children.iter().copied());
            }
            i += 1;
        }
        out.sort_unstable();
        out
    }

    /// `id` and every category above it, nearest first. Stops at a cycle rather than looping.
    pub fn ancestors(&self, id: i64) -> Vec<i64> {
        let mut out = vec![id];
        let mut current = id;
        while let Some(parent) = self.nodes.get(&current).and_then(|n| n.parent) {
            if out.contains(&parent) {
                break;
            }
            out.push(parent);
            current = parent;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_and_ancestors_follow_the_parents() {
        let tree = CategoryTree::from_rows([
            (1, None, "electronics".to_owned()),
            (2, Some(1), "audio".to_owned()),
            (3, Some(2), "headphones".to_owned()),
            (4, None, "books".to_owned()),
        ]);
        assert_eq!(tree.subtree(1), vec![1, 2, 3]);
        assert_eq!(tree.subtree(4), vec![4]);
        assert_eq!(tree.ancestors(3), vec![3, 2, 1]);
        assert_eq!(tree.resolve("audio"), Some(2));
        assert_eq!(tree.resolve("3"), Some(3));
        assert_eq!(tree.resolve("99"), None);
    }
}
