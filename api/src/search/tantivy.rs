//! The embedded index: tantivy in this process, in a directory of its own.
//!
//! Layout of the directory: `CURRENT` names the generation in use (`gen-<uuid>/`, a whole
//! tantivy index). A rebuild writes a new generation beside it and then replaces `CURRENT`
//! (write + rename, atomic); the process serving searches notices, opens the new generation and
//! swaps one pointer, so searches never see a missing or half-built index. The outbox
//! checkpoint travels in each tantivy commit's payload, so a commit applies changes and
//! remembers them in one step.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use tantivy::{
    DocAddress, DocId, DocSet, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, SegmentOrdinal, SegmentReader, TERMINATED,
    TantivyDocument, Term,
    collector::{Collector, SegmentCollector, TopDocs},
    columnar::{Column, ColumnValues, StrColumn},
    fieldnorm::FieldNormReader,
    index::SegmentId,
    postings::{Postings, SegmentPostings},
    query::{AllQuery, Bm25Weight, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, PhrasePrefixQuery, Query, TermQuery},
    schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TextFieldIndexing, TextOptions, Value},
};

use super::{
    Checkpoint, Facets, Hit, IndexChanges, IndexDoc, IndexQuery, IndexResults, Rebuild, SearchError, SearchIndex, Sort,
    query::{PRICE_BANDS, price_band},
};

const CURRENT: &str = "CURRENT";
/// Indexing memory of the follower (small batches) and of a rebuild (the whole catalogue).
const FOLLOW_WRITER_BYTES: usize = 30_000_000;
const REBUILD_WRITER_BYTES: usize = 200_000_000;
/// A generation directory that is not current and older than this is a failed rebuild's leftover.
const STALE_GENERATION: Duration = Duration::from_secs(3600);

/// Field boosts: a word in the title counts most, then the brand, then the description.
const TITLE_BOOST: f32 = 3.0;
const BRAND_BOOST: f32 = 2.0;
const DESCRIPTION_BOOST: f32 = 1.0;
/// A fuzzy (misspelt) match scores a constant; kept below an exact match.
const FUZZY_WEIGHT: f32 = 0.5;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    brand_text: Field,
    description: Field,
    /// Title, brand and description in one field, for matching only: a word is one posting
    /// list instead of a union of three.
    text: Field,
    brand: Field,
    category: Field,
    category_slug: Field,
    price: Field,
    currency: Field,
    available: Field,
    rating: Field,
    rating_count: Field,
    created: Field,
}

fn schema() -> Schema {
    let mut b = Schema::builder();
    let with_freqs = TextOptions::default()
        .set_indexing_options(TextFieldIndexing::default().set_tokenizer("default").set_index_option(IndexRecordOption::WithFreqs));
    b.add_u64_field("id", INDEXED | FAST | STORED);
    // positions for the phrase boost and for autocomplete
    b.add_text_field("title", TEXT | STORED);
    b.add_text_field("brand_text", with_freqs.clone());
    b.add_text_field("description", with_freqs);
    b.add_text_field(
        "text",
        TextOptions::default()
            .set_indexing_options(TextFieldIndexing::default().set_tokenizer("default").set_index_option(IndexRecordOption::Basic)),
    );
    b.add_text_field("brand", STRING | FAST | STORED);
    b.add_u64_field("category", FAST | STORED);
    b.add_text_field("category_slug", STRING | STORED);
    b.add_i64_field("price", FAST | STORED);
    b.add_text_field("currency", STRING | STORED);
    b.add_i64_field("available", FAST | STORED);
    b.add_f64_field("rating", FAST);
    b.add_u64_field("rating_count", FAST);
    b.add_i64_field("created", FAST);
    b.build()
}

impl Fields {
    /// The fields a word is scored in, with their boosts (the query and `RelevanceTerms`).
    fn scored(&self) -> [(Field, f32); 3] {
        [(self.title, TITLE_BOOST), (self.brand_text, BRAND_BOOST), (self.description, DESCRIPTION_BOOST)]
    }

    fn of(schema: &Schema) -> Result<Self, SearchError> {
        let f = |name: &str| schema.get_field(name).map_err(|_| SearchError::Corrupt(format!("index has no field {name}")));
        Ok(Fields {
            id: f("id")?,
            title: f("title")?,
            brand_text: f("brand_text")?,
            description: f("description")?,
            text: f("text")?,
            brand: f("brand")?,
            category: f("category")?,
            category_slug: f("category_slug")?,
            price: f("price")?,
            currency: f("currency")?,
            available: f("available")?,
            rating: f("rating")?,
            rating_count: f("rating_count")?,
            created: f("created")?,
        })
    }

    fn document(&self, doc: &IndexDoc) -> TantivyDocument {
        let mut d = TantivyDocument::default();
        d.add_u64(self.id, doc.id as u64);
        d.add_text(self.title, &doc.title);
        d.add_text(self.brand_text, &doc.brand);
        d.add_text(self.description, &doc.description);
        for part in [&doc.title, &doc.brand, &doc.description] {
            d.add_text(self.text, part);
        }
        d.add_text(self.brand, &doc.brand);
        d.add_u64(self.category, doc.category_id as u64);
        d.add_text(self.category_slug, &doc.category_slug);
        d.add_i64(self.price, doc.price_minor);
        d.add_text(self.currency, &doc.currency);
        d.add_i64(self.available, doc.available);
        d.add_f64(self.rating, doc.rating);
        d.add_u64(self.rating_count, doc.rating_count.max(0) as u64);
        d.add_i64(self.created, doc.created_at.timestamp_micros());
        d
    }
}

/// What a generation keeps per segment and "in stock only", built on first use.
type PerSegment<T> = Mutex<HashMap<(SegmentId, bool), Arc<T>>>;

/// One tantivy index (one generation directory) with its reader and writer.
struct Generation {
    name: String,
    index: Index,
    reader: IndexReader,
    /// Opened on first write: a `reindex` process never writes to the generation in use, so it
    /// must not take its lock away from the API.
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    fields: Fields,
    checkpoint: Mutex<Option<Checkpoint>>,
    opstamp: AtomicU64,
    /// Per segment and "in stock only": what browsing without filters needs (see `browse`).
    browse: PerSegment<BrowseTables>,
    /// Per segment and "in stock only": what browsing by category or brands needs (see
    /// `browse_cells`).
    cells: PerSegment<CellTables>,
    /// Per segment: each document's facet values in one word (see `DocFacts`).
    facts: PerSegment<Option<DocFacts>>,
    /// Per segment: its columns, opened once (see `SegmentColumns`).
    columns: PerSegment<SegmentColumns>,
}

impl Generation {
    fn open(base: &Path, name: &str) -> Result<Self, SearchError> {
        let index = Index::open_in_dir(base.join(name))?;
        Self::from_index(name, index)
    }

    fn from_index(name: &str, index: Index) -> Result<Self, SearchError> {
        let fields = Fields::of(&index.schema())?;
        let metas = index.load_metas()?;
        let checkpoint = match metas.payload.as_deref() {
            None => None,
            Some(payload) => {
                Some(serde_json::from_str::<Checkpoint>(payload).map_err(|e| SearchError::Corrupt(format!("commit payload: {e}")))?)
            }
        };
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(Generation {
            name: name.to_owned(),
            reader,
            writer: Mutex::new(None),
            fields,
            checkpoint: Mutex::new(checkpoint),
            opstamp: AtomicU64::new(metas.opstamp),
            browse: Mutex::new(HashMap::new()),
            cells: Mutex::new(HashMap::new()),
            facts: Mutex::new(HashMap::new()),
            columns: Mutex::new(HashMap::new()),
            index,
        })
    }
}

struct Inner {
    base: PathBuf,
    /// This process serves searches from the index and owns the generations: it deletes the
    /// one it replaces. A `reindex` process only builds and names the new one.
    serving: bool,
    current: ArcSwap<Generation>,
    /// Serialises applying changes and swapping generations.
    swap: tokio::sync::Mutex<()>,
    /// Searches run at most this many at once, the rest wait their turn in arrival order:
    /// without a bound each takes a blocking thread, and under a burst the cores are shared
    /// among all of them, HTTP and the indexer included. See `default_search_threads`.
    searching: tokio::sync::Semaphore,
}

/// The tantivy implementation of [`SearchIndex`].
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

impl TantivyIndex {
    /// Opens the generation `CURRENT` names under `base`, or creates an empty one; runs at
    /// most `threads` searches at once.
    pub fn open(base: impl Into<PathBuf>, threads: usize) -> Result<Self, SearchError> {
        Self::open_with(base.into(), true, threads)
    }

    /// For the `reindex` command, next to a running API: builds new generations, never writes
    /// to or deletes the one in use.
    pub fn open_for_reindex(base: impl Into<PathBuf>) -> Result<Self, SearchError> {
        Self::open_with(base.into(), false, 1)
    }

    fn open_with(base: PathBuf, serving: bool, threads: usize) -> Result<Self, SearchError> {
        std::fs::create_dir_all(&base)?;
        let empty = |announce: bool| -> Result<Generation, SearchError> {
            let name = new_generation_name();
            let index = Index::create_in_dir(create_dir(&base, &name)?, schema())?;
            let generation = Generation::from_index(&name, index)?;
            if announce {
                write_current(&base, &name)?;
            }
            Ok(generation)
        };
        let generation = match read_current(&base)? {
            Some(name) => {
                let index = Index::open_in_dir(base.join(&name))?;
                if index.schema() == schema() {
                    Generation::from_index(&name, index)?
                } else {
                    // Written by an older version: its documents lack fields that queries now
                    // read. An empty generation has no checkpoint, so the indexer builds it
                    // from Postgres; a `reindex` process builds its own and names it itself.
                    tracing::warn!(generation = %name, "search index has an older schema; starting a new one, built from Postgres");
                    empty(serving)?
                }
            }
            None => empty(true)?,
        };
        if serving {
            remove_stale_generations(&base, &generation.name);
        }
        Ok(TantivyIndex {
            inner: Arc::new(Inner {
                base,
                serving,
                current: ArcSwap::from_pointee(generation),
                swap: tokio::sync::Mutex::new(()),
                searching: tokio::sync::Semaphore::new(threads.max(1)),
            }),
        })
    }

    /// The name of the generation in use (tests look at it to see a swap).
    pub fn generation_name(&self) -> String {
        self.inner.current.load().name.clone()
    }
}

fn new_generation_name() -> String {
    format!("gen-{}", uuid::Uuid::now_v7().simple())
}

fn create_dir(base: &Path, name: &str) -> Result<PathBuf, SearchError> {
    let dir = base.join(name);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn read_current(base: &Path) -> Result<Option<String>, SearchError> {
    match std::fs::read_to_string(base.join(CURRENT)) {
        Ok(name) => {
            let name = name.trim().to_owned();
            if name.is_empty() || !base.join(&name).is_dir() {
                return Err(SearchError::Corrupt(format!("{CURRENT} names {name:?}, which is not a directory")));
            }
            Ok(Some(name))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replaces `CURRENT` atomically: a reader sees the old name or the new one, never a torn file.
fn write_current(base: &Path, name: &str) -> Result<(), SearchError> {
    let tmp = base.join(format!("{CURRENT}.{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, name)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, base.join(CURRENT))?;
    Ok(())
}

fn remove_stale_generations(base: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("gen-") || name == current {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_GENERATION)
            .unwrap_or(false);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, SearchError> + Send + 'static) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SearchError::Task(e.to_string()))?
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn search(&self, query: &IndexQuery) -> Result<IndexResults, SearchError> {
        let _turn = self.inner.searching.acquire().await.map_err(|e| SearchError::Task(e.to_string()))?;
        let generation = self.inner.current.load_full();
        let query = query.clone();
        blocking(move || search(&generation, &query)).await
    }

    async fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<String>, SearchError> {
        let _turn = self.inner.searching.acquire().await.map_err(|e| SearchError::Task(e.to_string()))?;
        let generation = self.inner.current.load_full();
        let prefix = prefix.to_owned();
        blocking(move || suggest(&generation, &prefix, limit)).await
    }

    async fn checkpoint(&self) -> Result<Option<Checkpoint>, SearchError> {
        Ok(self.inner.current.load().checkpoint.lock().expect("checkpoint lock").clone())
    }

    async fn apply(&self, changes: IndexChanges, checkpoint: Checkpoint) -> Result<(), SearchError> {
        let _guard = self.inner.swap.lock().await;
        let generation = self.inner.current.load_full();
        blocking(move || {
            let f = generation.fields;
            let mut slot = generation.writer.lock().expect("writer lock");
            if slot.is_none() {
                *slot = Some(generation.index.writer_with_num_threads(1, FOLLOW_WRITER_BYTES)?);
            }
            let writer = slot.as_mut().expect("writer just opened");
            for id in changes.deletes.iter().chain(changes.upserts.iter().map(|d| &d.id)) {
                writer.delete_term(Term::from_field_u64(f.id, *id as u64));
            }
            for doc in &changes.upserts {
                writer.add_document(f.document(doc))?;
            }
            let payload = serde_json::to_string(&checkpoint).expect("checkpoint serialises");
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            let opstamp = prepared.commit()?;
            drop(slot);
            generation.reader.reload()?;
            *generation.checkpoint.lock().expect("checkpoint lock") = Some(checkpoint);
            generation.opstamp.store(opstamp, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn begin_rebuild(&self) -> Result<Box<dyn Rebuild>, SearchError> {
        let base = self.inner.base.clone();
        let owner = self.inner.clone();
        blocking(move || {
            let name = new_generation_name();
            let index = Index::create_in_dir(create_dir(&base, &name)?, schema())?;
            let fields = Fields::of(&index.schema())?;
            let writer = index.writer(REBUILD_WRITER_BYTES)?;
            Ok(Box::new(TantivyRebuild { owner, name, index, writer: Some(writer), fields }) as Box<dyn Rebuild>)
        })
        .await
    }

    async fn refresh(&self) -> Result<bool, SearchError> {
        let base = self.inner.base.clone();
        let Some(name) = read_current(&base)? else { return Ok(false) };
        if name == self.inner.current.load().name {
            return Ok(false);
        }
        let _guard = self.inner.swap.lock().await;
        if name == self.inner.current.load().name {
            return Ok(false);
        }
        let opened = {
            let (base, name) = (base.clone(), name.clone());
            blocking(move || Generation::open(&base, &name)).await?
        };
        swap_in(&self.inner, opened);
        Ok(true)
    }

    fn generation(&self) -> String {
        let current = self.inner.current.load();
        format!("{}:{}", current.name, current.opstamp.load(Ordering::Acquire))
    }

    async fn num_docs(&self) -> Result<u64, SearchError> {
        Ok(self.inner.current.load().reader.searcher().num_docs())
    }
}

/// Makes `generation` current and deletes the directory of the one it replaces. Searches still
/// running on the old one keep it open (its files stay readable until they finish).
fn swap_in(inner: &Inner, generation: Generation) {
    let name = generation.name.clone();
    let old = inner.current.swap(Arc::new(generation));
    tracing::info!(from = %old.name, to = %name, "search index generation swapped in");
    if inner.serving && old.name != name {
        let dir = inner.base.join(&old.name);
        drop(old);
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %err, dir = %dir.display(), "could not remove the old search index");
        }
    }
}

struct TantivyRebuild {
    owner: Arc<Inner>,
    name: String,
    index: Index,
    writer: Option<IndexWriter<TantivyDocument>>,
    fields: Fields,
}

#[async_trait]
impl Rebuild for TantivyRebuild {
    async fn add(&mut self, docs: Vec<IndexDoc>) -> Result<(), SearchError> {
        let writer = self.writer.as_ref().expect("writer until finish");
        // add_document only queues the document for the indexing threads: cheap enough inline
        for doc in &docs {
            writer.add_document(self.fields.document(doc))?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, checkpoint: Checkpoint) -> Result<(), SearchError> {
        let mut writer = self.writer.take().expect("finish once");
        let (base, name, index) = (self.owner.base.clone(), self.name.clone(), self.index.clone());
        let generation = blocking(move || {
            let payload = serde_json::to_string(&checkpoint).expect("checkpoint serialises");
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            // releases the directory lock, so whichever process serves searches can write
            writer.wait_merging_threads()?;
            let generation = Generation::from_index(&name, index)?;
            write_current(&base, &name)?;
            Ok(generation)
        })
        .await?;
        let _guard = self.owner.swap.lock().await;
        swap_in(&self.owner, generation);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Searching

fn tokens(index: &Index, field: Field, text: &str) -> Result<Vec<String>, SearchError> {
    let mut analyzer = index.tokenizer_for_field(field)?;
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    Ok(out)
}

/// Every word must match title, brand or description (BM25, boosted by field). A word of four
/// letters or more that no product contains is taken as a typo: it matches within one edit (two
/// from eight letters) in the title or brand. Words the index knows are matched exactly, which
/// keeps the common case cheap (a fuzzy clause visits every posting of every term it expands to).
///
/// Unscored (every sort but relevance), a known word is matched in the combined `text` field:
/// one posting list, where a union of the three fields visits all three lists. Scored, each
/// word is the union of its three boosted field terms (the BM25 sum, boosted by field); that
/// measured faster than matching in `text` and scoring the field terms as optional clauses,
/// which are sought document by document.
fn text_query(generation: &Generation, searcher: &tantivy::Searcher, text: &str, scoring: bool) -> Result<Box<dyn Query>, SearchError> {
    let f = generation.fields;
    let words = tokens(&generation.index, f.title, text)?;
    if words.is_empty() {
        return Ok(Box::new(AllQuery));
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for word in &words {
        let matched = Term::from_field_text(f.text, word);
        let letters = word.chars().count();
        let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !taken_as_typo(generation, searcher, word)? {
            if !scoring {
                clauses.push((Occur::Must, Box::new(TermQuery::new(matched, IndexRecordOption::Basic))));
                continue;
            }
            for (field, boost) in f.scored() {
                let term = TermQuery::new(Term::from_field_text(field, word), IndexRecordOption::WithFreqs);
                any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(term), boost))));
            }
        } else {
            let distance = if letters >= 8 { 2 } else { 1 };
            for (field, boost) in [(f.title, TITLE_BOOST), (f.brand_text, BRAND_BOOST)] {
                let fuzzy = FuzzyTermQuery::new(Term::from_field_text(field, word), distance, true);
                any.push((Occur::Should, Box::new(BoostQuery::new(Box::new(fuzzy), boost * FUZZY_WEIGHT))));
            }
        }
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    Ok(Box::new(BooleanQuery::new(clauses)))
}

/// A word of four letters or more that no product contains is taken as a typo.
fn taken_as_typo(generation: &Generation, searcher: &tantivy::Searcher, word: &str) -> Result<bool, SearchError> {
    Ok(word.chars().count() >= 4 && searcher.doc_freq(&Term::from_field_text(generation.fields.text, word))? == 0)
}

/// BM25 of a text query whose words are all known, worked out by the collector only for the
/// documents that pass every filter. The query itself then matches unscored in `text`, as for
/// the other sorts. Scored by tantivy instead, each word is a union of three boosted field
/// terms, and a union scores every document of its window before the other words and the
/// filters are applied. The score is the same sum: per word, its field terms' boosted BM25.
struct RelevanceTerms {
    /// Per word, each field's term with its weight (index-wide statistics, boost applied).
    words: Vec<Vec<(Term, Bm25Weight)>>,
}

impl RelevanceTerms {
    /// `None` when a word is taken as a typo (fuzzy matching is scored by tantivy).
    fn new(generation: &Generation, searcher: &tantivy::Searcher, text: &str) -> Result<Option<Self>, SearchError> {
        let f = generation.fields;
        let mut words = Vec::new();
        for word in tokens(&generation.index, f.title, text)? {
            if taken_as_typo(generation, searcher, &word)? {
                return Ok(None);
            }
            let mut terms = Vec::new();
            for (field, boost) in f.scored() {
                let term = Term::from_field_text(field, &word);
                let weight = Bm25Weight::for_terms(searcher, std::slice::from_ref(&term))?.boost_by(boost);
                terms.push((term, weight));
            }
            words.push(terms);
        }
        Ok((!words.is_empty()).then_some(Self { words }))
    }

    fn for_segment(&self, reader: &SegmentReader) -> tantivy::Result<SegmentRelevance> {
        let mut words = Vec::with_capacity(self.words.len());
        for terms in &self.words {
            let mut postings = Vec::with_capacity(terms.len());
            for (term, weight) in terms {
                let Some(list) = reader.inverted_index(term.field())?.read_postings(term, IndexRecordOption::WithFreqs)? else {
                    continue;
                };
                let norms = match reader.fieldnorms_readers().get_field(term.field())? {
                    Some(norms) => norms,
                    None => FieldNormReader::constant(reader.max_doc(), 1),
                };
                postings.push(FieldPostings { list, weight: weight.clone(), norms });
            }
            words.push(postings);
        }
        Ok(SegmentRelevance { words })
    }
}

struct FieldPostings {
    list: SegmentPostings,
    weight: Bm25Weight,
    norms: FieldNormReader,
}

/// A segment's postings of the scored terms, moved forward as the collector's documents
/// arrive (in ascending order).
struct SegmentRelevance {
    words: Vec<Vec<FieldPostings>>,
}

impl SegmentRelevance {
    fn score(&mut self, doc: DocId) -> Score {
        let mut total = 0.0;
        for postings in &mut self.words {
            let mut word = 0.0;
            for p in postings.iter_mut() {
                if p.list.doc() < doc && p.list.doc() != TERMINATED {
                    p.list.seek(doc);
                }
                if p.list.doc() == doc {
                    word += p.weight.score(p.norms.fieldnorm_id(doc), p.list.term_freq());
                }
            }
            total += word;
        }
        total
    }
}

/// Browsing with no filter but "in stock" would visit every document to count the facets. A
/// segment never changes once written, so its counts and, per sort, its documents in order are
/// worked out once (on first use) and kept with the generation; at query time a segment's
/// deleted documents are taken back out and the top of each order is merged.
struct BrowseTables {
    total: u64,
    categories: Vec<u64>,
    brands: Vec<u64>,
    prices: Vec<u64>,
    /// Per sort (`sort_index`): the segment's documents, best first.
    orders: [std::sync::OnceLock<Vec<DocId>>; 5],
}

fn sort_index(sort: Sort) -> usize {
    match sort {
        Sort::Relevance => 0,
        Sort::PriceAsc => 1,
        Sort::PriceDesc => 2,
        Sort::Newest => 3,
        Sort::Rating => 4,
    }
}

/// Runs `f` over the segment's documents in collector-sized blocks, deleted ones included.
fn every_block(reader: &SegmentReader, mut f: impl FnMut(&[DocId])) {
    let mut block = [0 as DocId; BLOCK];
    for start in (0..reader.max_doc()).step_by(BLOCK) {
        let n = (reader.max_doc() - start).min(BLOCK as DocId) as usize;
        for (i, slot) in block[..n].iter_mut().enumerate() {
            *slot = start + i as DocId;
        }
        f(&block[..n]);
    }
}

/// The table of `reader`'s segment (and "in stock only") kept in `tables`, built with `build`
/// on first use; building one also drops those of segments merged away since.
fn segment_table<T>(
    tables: &Mutex<HashMap<(SegmentId, bool), Arc<T>>>,
    searcher: &tantivy::Searcher,
    reader: &SegmentReader,
    in_stock: bool,
    build: impl FnOnce() -> tantivy::Result<T>,
) -> tantivy::Result<Arc<T>> {
    let key = (reader.segment_id(), in_stock);
    if let Some(table) = tables.lock().expect("segment tables lock").get(&key) {
        return Ok(table.clone());
    }
    let table = Arc::new(build()?);
    let live: HashSet<SegmentId> = searcher.segment_readers().iter().map(|r| r.segment_id()).collect();
    let mut map = tables.lock().expect("segment tables lock");
    map.retain(|(segment, _), _| live.contains(segment));
    map.insert(key, table.clone());
    Ok(table)
}

fn browse(generation: &Generation, searcher: &tantivy::Searcher, collector: &SearchCollector<'_>) -> tantivy::Result<SearchFruit> {
    let mut fruits = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let tables = segment_table(&generation.browse, searcher, reader, collector.in_stock, || {
            let mut all = collector.for_segment(ord as SegmentOrdinal, reader)?;
            all.top = Top::new(0);
            every_block(reader, |block| all.collect_block(block));
            Ok(BrowseTables {
                total: all.total,
                categories: std::mem::take(&mut all.category_counts),
                brands: std::mem::take(&mut all.brand_counts),
                prices: std::mem::take(&mut all.price_counts),
                orders: Default::default(),
            })
        })?;
        let mut segment = collector.for_segment(ord as SegmentOrdinal, reader)?;
        segment.total = tables.total;
        segment.category_counts.clone_from(&tables.categories);
        segment.brand_counts.clone_from(&tables.brands);
        segment.price_counts.clone_from(&tables.prices);
        let alive = reader.alive_bitset();
        if let Some(alive) = alive {
            segment.take_out_deleted(reader, alive);
        }
        let order = tables.orders[sort_index(collector.sort)].get_or_init(|| {
            let mut docs = Vec::new();
            every_block(reader, |block| {
                docs.extend(block.iter().copied().filter(|&doc| !segment.in_stock || segment.columns.available.get_val(doc) > 0));
            });
            segment.best_first(docs)
        });
        let best = order.iter().copied().filter(|&doc| alive.is_none_or(|a| a.is_alive(doc))).take(collector.window);
        for doc in best {
            let key = segment.sort_key(doc, 0.0, segment.columns.price.get_val(doc));
            segment.top.push(TopEntry { key, score: 0.0, address: DocAddress::new(ord as SegmentOrdinal, doc) });
        }
        fruits.push(segment.harvest());
    }
    collector.merge_fruits(fruits)
}

/// Browsing by category or brands (no text, no price range) would visit every document of the
/// category and of the brands to count the facets, each under the other filters. Per segment,
/// the documents are grouped instead into cells of one category and one brand, each with its
/// count per price band and, per sort, its documents in order (worked out on first use and kept
/// with the generation, as `BrowseTables` are): the total, every facet and the page are then
/// sums and merges over the cells, whatever the filters.
struct CellTables {
    cells: Vec<Cell>,
}

struct Cell {
    category: u64,
    brand: Option<u64>,
    /// Documents per price band (`PRICE_BANDS`).
    bands: Vec<u64>,
    /// Deleted ones included, in document order.
    docs: Vec<DocId>,
    /// Per sort (`sort_index`): `docs`, best first.
    orders: [std::sync::OnceLock<Vec<DocId>>; 5],
}

impl CellTables {
    fn build(reader: &SegmentReader, segment: &SegmentSearch) -> Self {
        let mut at: HashMap<(u64, Option<u64>), usize> = HashMap::new();
        let mut cells: Vec<Cell> = Vec::new();
        every_block(reader, |block| {
            for &doc in block {
                if segment.in_stock && segment.columns.available.get_val(doc) <= 0 {
                    continue;
                }
                let (category, brand) = (segment.columns.category.get_val(doc), segment.columns.brand_ords.first(doc));
                let i = *at.entry((category, brand)).or_insert_with(|| {
                    cells.push(Cell { category, brand, bands: vec![0; PRICE_BANDS.len()], docs: Vec::new(), orders: Default::default() });
                    cells.len() - 1
                });
                cells[i].bands[price_band(segment.columns.price.get_val(doc))] += 1;
                cells[i].docs.push(doc);
            }
        });
        CellTables { cells }
    }
}

fn browse_cells(generation: &Generation, searcher: &tantivy::Searcher, collector: &SearchCollector<'_>) -> tantivy::Result<SearchFruit> {
    let mut fruits = Vec::new();
    for (ord, reader) in searcher.segment_readers().iter().enumerate() {
        let mut segment = collector.for_segment(ord as SegmentOrdinal, reader)?;
        let tables = segment_table(&generation.cells, searcher, reader, collector.in_stock, || Ok(CellTables::build(reader, &segment)))?;
        let alive = reader.alive_bitset();
        let mut matching = Vec::new();
        for cell in &tables.cells {
            // the filters pass or fail a whole cell alike, whichever band
            let mut matches = false;
            for (band, &n) in cell.bands.iter().enumerate().filter(|(_, n)| **n > 0) {
                matches = segment.tally(cell.category, cell.brand, band, true, n, false);
            }
            if matches {
                matching.push(cell);
            }
        }
        if let Some(alive) = alive {
            segment.take_out_deleted(reader, alive);
        }
        for cell in matching {
            let order = cell.orders[sort_index(collector.sort)].get_or_init(|| segment.best_first(cell.docs.clone()));
            for doc in order.iter().copied().filter(|&doc| alive.is_none_or(|a| a.is_alive(doc))).take(collector.window) {
                let key = segment.sort_key(doc, 0.0, segment.columns.price.get_val(doc));
                if segment.top.floor().is_some_and(|floor| key.0 < floor) {
                    break; // the rest of this cell comes after it
                }
                segment.top.push(TopEntry { key, score: 0.0, address: DocAddress::new(ord as SegmentOrdinal, doc) });
            }
        }
        fruits.push(segment.harvest());
    }
    collector.merge_fruits(fruits)
}

/// With both a category and a brand filter, a document that matches neither counts nowhere:
/// not in the results, and not in any facet (each facet drops one filter, never two). Those
/// documents are left out by the inverted index instead of being visited one by one; a
/// category page filtered by brands then reads a fraction of the catalogue. The collector
/// still checks every filter itself, so this only has to be a superset. Used without words
/// only (a price range with a category and brands): under words the union's seeks cost more
/// than reading each match's packed facts.
fn with_candidates(
    generation: &Generation,
    searcher: &tantivy::Searcher,
    q: &IndexQuery,
    query: Box<dyn Query>,
) -> Result<Box<dyn Query>, SearchError> {
    if q.category.is_none() || q.brands.is_empty() || q.category_slugs.is_empty() {
        return Ok(query);
    }
    let f = generation.fields;
    let term = |field, text: &str| -> (Occur, Box<dyn Query>) {
        (Occur::Should, Box::new(TermQuery::new(Term::from_field_text(field, text), IndexRecordOption::Basic)))
    };
    let mut any: Vec<(Occur, Box<dyn Query>)> = q.category_slugs.iter().map(|slug| term(f.category_slug, slug)).collect();
    // brands are filtered case-insensitively; the index holds them as written
    let wanted: HashSet<String> = q.brands.iter().map(|b| b.to_lowercase()).collect();
    let mut brands = HashSet::new();
    for segment in searcher.segment_readers() {
        let inverted = segment.inverted_index(f.brand)?;
        let mut terms = inverted.terms().stream()?;
        while terms.advance() {
            if let Ok(brand) = std::str::from_utf8(terms.key())
                && wanted.contains(&brand.to_lowercase())
            {
                brands.insert(brand.to_owned());
            }
        }
    }
    any.extend(brands.iter().map(|brand| term(f.brand, brand)));
    let candidates = ConstScoreQuery::new(Box::new(BooleanQuery::new(any)), 0.0);
    Ok(Box::new(BooleanQuery::new(vec![(Occur::Must, query), (Occur::Must, Box::new(candidates))])))
}

fn search(generation: &Generation, q: &IndexQuery) -> Result<IndexResults, SearchError> {
    let searcher = generation.reader.searcher();
    // only a relevance sort of a text query needs BM25; the others skip scoring (score 0)
    let has_words = !q.text.trim().is_empty();
    let by_relevance = q.sort == Sort::Relevance && has_words;
    let relevance = if by_relevance { RelevanceTerms::new(generation, &searcher, &q.text)? } else { None };
    // a typo query is still scored by tantivy
    let scoring = by_relevance && relevance.is_none();
    let matching = text_query(generation, &searcher, &q.text, scoring)?;
    // Words narrow the matches themselves, and each match's facets cost one read: a union of
    // the category and brand terms would only add its seeks.
    let query = if has_words { matching } else { with_candidates(generation, &searcher, q, matching)? };
    let collector = SearchCollector {
        cached: Some((generation, &searcher)),
        relevance: relevance.as_ref(),
        scoring,
        categories: (q.category.is_some()).then(|| q.category_ids.iter().map(|&c| c as u64).collect()),
        brands: (!q.brands.is_empty()).then(|| q.brands.iter().map(|b| b.to_lowercase()).collect()),
        min_price: q.min_price,
        max_price: q.max_price,
        in_stock: q.in_stock,
        sort: q.sort,
        window: q.offset + q.limit,
    };
    let browsing = q.text.trim().is_empty() && q.min_price.is_none() && q.max_price.is_none();
    let fruit = match (browsing, q.category.is_none() && q.brands.is_empty()) {
        (true, true) => browse(generation, &searcher, &collector)?,
        (true, false) => browse_cells(generation, &searcher, &collector)?,
        (false, _) => searcher.search(&query, &collector)?,
    };
    let f = generation.fields;
    let mut hits = Vec::with_capacity(q.limit);
    for entry in fruit.top.into_iter().skip(q.offset).take(q.limit) {
        let doc: TantivyDocument = searcher.doc(entry.address)?;
        let text = |field| doc.get_first(field).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let int = |field| doc.get_first(field).and_then(|v| v.as_i64()).unwrap_or_default();
        hits.push(Hit {
            id: doc.get_first(f.id).and_then(|v| v.as_u64()).unwrap_or_default() as i64,
            title: text(f.title),
            brand: text(f.brand),
            price_minor: int(f.price),
            currency: text(f.currency),
            available: int(f.available),
            category_id: doc.get_first(f.category).and_then(|v| v.as_u64()).unwrap_or_default() as i64,
            score: entry.score,
        });
    }
    let mut categories: Vec<(i64, u64)> = fruit.categories.into_iter().filter(|(_, n)| *n > 0).map(|(c, n)| (c as i64, n)).collect();
    categories.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut brands: Vec<(String, u64)> = fruit.brands.into_iter().filter(|(_, n)| *n > 0).collect();
    brands.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(IndexResults { total: fruit.total, hits, facets: Facets { categories, brands, price_bands: fruit.price_bands } })
}

fn suggest(generation: &Generation, prefix: &str, limit: usize) -> Result<Vec<String>, SearchError> {
    let f = generation.fields;
    let words = tokens(&generation.index, f.title, prefix)?;
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let mut query = PhrasePrefixQuery::new(words.iter().map(|w| Term::from_field_text(f.title, w)).collect());
    query.set_max_expansions(200);
    let searcher = generation.reader.searcher();
    let top = searcher.search(&query, &TopDocs::with_limit(limit * 5).order_by_fast_field::<u64>("rating_count", Order::Desc))?;
    let mut seen = HashSet::new();
    let mut titles = Vec::new();
    for (_, address) in top {
        let doc: TantivyDocument = searcher.doc(address)?;
        let title = doc.get_first(f.title).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        if seen.insert(title.clone()) {
            titles.push(title);
            if titles.len() == limit {
                break;
            }
        }
    }
    Ok(titles)
}

/// Order-preserving map of a float to an integer, so every sort is "largest key first".
fn f32_key(x: f32) -> u64 {
    let bits = x.to_bits();
    u64::from(if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 })
}

/// A sort key is (primary, tie-break), larger first; the id breaks ties, so the order is total
/// and pages never overlap. This is the primary part.
fn primary_key(sort: Sort, score: Score, price: i64, created: i64, rating: f64, rating_count: u64) -> u64 {
    match sort {
        Sort::Relevance => f32_key(score),
        Sort::PriceAsc => u64::MAX - price.max(0) as u64,
        Sort::PriceDesc => price.max(0) as u64,
        Sort::Newest => created.max(0) as u64,
        Sort::Rating => (((rating * 100.0).round().max(0.0) as u64) << 32) | rating_count.min(u32::MAX as u64),
    }
}

/// Ties go to the lower id, except for `newest`, where the higher id is the newer product.
fn tie_key(sort: Sort, id: u64) -> u64 {
    match sort {
        Sort::Newest => id,
        _ => u64::MAX - id,
    }
}

#[derive(Debug, Clone, Copy)]
struct TopEntry {
    key: (u64, u64),
    score: Score,
    address: DocAddress,
}

impl PartialEq for TopEntry {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for TopEntry {}
impl PartialOrd for TopEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TopEntry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Keeps the `window` largest entries.
struct Top {
    window: usize,
    heap: BinaryHeap<Reverse<TopEntry>>,
}

impl Top {
    fn new(window: usize) -> Self {
        Top { window, heap: BinaryHeap::with_capacity(window + 1) }
    }

    fn push(&mut self, entry: TopEntry) {
        if self.heap.len() < self.window {
            self.heap.push(Reverse(entry));
        } else if let Some(Reverse(min)) = self.heap.peek()
            && entry > *min
        {
            self.heap.pop();
            self.heap.push(Reverse(entry));
        }
    }

    /// Once the window is full, the first key part an entry needs at least to get in.
    fn floor(&self) -> Option<u64> {
        if self.heap.len() < self.window {
            return None;
        }
        self.heap.peek().map(|Reverse(min)| min.key.0)
    }

    fn into_sorted(self) -> Vec<TopEntry> {
        let mut v: Vec<TopEntry> = self.heap.into_iter().map(|Reverse(e)| e).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// Per segment, each document's category, brand, price band and stock packed in one word, so
/// that a match costs one read where the columns cost four decodes (a segment never changes
/// once written: worked out on first use and kept with the generation, 8 bytes a document).
struct DocFacts {
    words: Vec<u64>,
}

/// One document's facet values, as `DocFacts` keeps them.
struct Fact {
    category: u64,
    brand: Option<u64>,
    band: usize,
    in_stock: bool,
}

// Bits 0..32 the category id, 32..59 the brand ordinal + 1 (0: none), 59..63 the price band,
// 63 in stock.
const FACT_BRAND_SHIFT: u32 = 32;
const FACT_BRAND_MASK: u64 = (1 << 27) - 1;
const FACT_BAND_SHIFT: u32 = 59;
const FACT_IN_STOCK: u64 = 1 << 63;
const _: () = assert!(PRICE_BANDS.len() <= 16);

impl DocFacts {
    /// `None` when a value does not fit its bits (a category id of 2^32 or more, or 2^27
    /// brands in one segment): the columns are read then.
    fn build(reader: &SegmentReader, segment: &SegmentSearch) -> Option<Self> {
        let mut words = Vec::with_capacity(reader.max_doc() as usize);
        let mut fits = true;
        let mut categories = [0u64; BLOCK];
        let mut prices = [0i64; BLOCK];
        let mut brands = [None; BLOCK];
        let mut available = [0i64; BLOCK];
        every_block(reader, |docs| {
            let n = docs.len();
            segment.columns.category.get_vals(docs, &mut categories[..n]);
            segment.columns.price.get_vals(docs, &mut prices[..n]);
            segment.columns.brand_ords.first_vals(docs, &mut brands[..n]);
            segment.columns.available.get_vals(docs, &mut available[..n]);
            for i in 0..n {
                let brand = brands[i].map_or(0, |b| b + 1);
                fits &= categories[i] >> FACT_BRAND_SHIFT == 0 && brand <= FACT_BRAND_MASK;
                let stock = if available[i] > 0 { FACT_IN_STOCK } else { 0 };
                words.push(categories[i] | brand << FACT_BRAND_SHIFT | (price_band(prices[i]) as u64) << FACT_BAND_SHIFT | stock);
            }
        });
        fits.then_some(DocFacts { words })
    }

    #[inline]
    fn unpack(word: u64) -> Fact {
        Fact {
            category: word & 0xFFFF_FFFF,
            brand: ((word >> FACT_BRAND_SHIFT) & FACT_BRAND_MASK).checked_sub(1),
            band: ((word >> FACT_BAND_SHIFT) & 0xF) as usize,
            in_stock: word & FACT_IN_STOCK != 0,
        }
    }
}

/// One pass over the matching documents does everything: the filters, the total, the top of
/// the requested sort, and the three facets, each counted under every filter but its own.
struct SearchCollector<'a> {
    /// The generation whose per-segment columns and `DocFacts` are kept, and the searcher they
    /// are for; `None` opens the columns for this search and reads them instead of `DocFacts`.
    cached: Option<(&'a Generation, &'a tantivy::Searcher)>,
    /// Scores the documents that pass the filters (a relevance sort matched unscored).
    relevance: Option<&'a RelevanceTerms>,
    scoring: bool,
    categories: Option<HashSet<u64>>,
    brands: Option<HashSet<String>>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    in_stock: bool,
    sort: Sort,
    window: usize,
}

/// A segment's columns. Opening a column decodes its block index, and a search opens eight,
/// per segment: a segment never changes, so they are opened once and kept with the generation.
struct SegmentColumns {
    id: Arc<dyn ColumnValues<u64>>,
    category: Arc<dyn ColumnValues<u64>>,
    price: Arc<dyn ColumnValues<i64>>,
    available: Arc<dyn ColumnValues<i64>>,
    created: Arc<dyn ColumnValues<i64>>,
    rating: Arc<dyn ColumnValues<f64>>,
    rating_count: Arc<dyn ColumnValues<u64>>,
    brand_ords: Column<u64>,
    brand_column: Option<StrColumn>,
    /// Each brand ordinal's name, lower-cased: brand filters ignore case.
    brand_names: Vec<String>,
    /// The price column decoded, on first use by `DocFacts` matching (8 MB per million
    /// documents): a price sort, and a price filter that cuts through a band, read a price for
    /// every match, and one read from the column costs as much as the rest of the match.
    decoded_prices: std::sync::OnceLock<Vec<i64>>,
}

impl SegmentColumns {
    fn open(reader: &SegmentReader) -> tantivy::Result<Self> {
        let ff = reader.fast_fields();
        let brand_column = ff.str("brand")?;
        let brand_ords = match &brand_column {
            Some(c) => c.ords().clone(),
            None => Column::build_empty_column(reader.max_doc()),
        };
        let mut brand_names = Vec::new();
        if let Some(column) = &brand_column {
            let mut name = String::new();
            for ord in 0..column.num_terms() {
                name.clear();
                column.ord_to_str(ord as u64, &mut name)?;
                brand_names.push(name.to_lowercase());
            }
        }
        Ok(Self {
            id: ff.column_first_or_default::<u64>("id")?,
            category: ff.column_first_or_default::<u64>("category")?,
            price: ff.column_first_or_default::<i64>("price")?,
            available: ff.column_first_or_default::<i64>("available")?,
            created: ff.column_first_or_default::<i64>("created")?,
            rating: ff.column_first_or_default::<f64>("rating")?,
            rating_count: ff.column_first_or_default::<u64>("rating_count")?,
            brand_ords,
            brand_column,
            brand_names,
            decoded_prices: std::sync::OnceLock::new(),
        })
    }

    fn prices(&self) -> &[i64] {
        self.decoded_prices.get_or_init(|| {
            let mut prices = vec![0; self.price.num_vals() as usize];
            self.price.get_range(0, &mut prices);
            prices
        })
    }
}

struct SearchFruit {
    total: u64,
    top: Vec<TopEntry>,
    categories: std::collections::HashMap<u64, u64>,
    brands: Vec<(String, u64)>,
    price_bands: Vec<u64>,
}

struct SegmentSearch {
    segment: SegmentOrdinal,
    sort: Sort,
    in_stock: bool,
    min_price: i64,
    max_price: i64,
    /// Allowed category ids as a bitmap (ids are small), `None` without a category filter.
    category_allowed: Option<Vec<bool>>,
    /// Allowed brand ordinals of this segment, `None` without a brand filter.
    brand_allowed: Option<Vec<bool>>,
    /// Per price band: every price in it passes the price filter (`Some(true)`), none does
    /// (`Some(false)`), or it depends on the price (`None`).
    band_passes: [Option<bool>; PRICE_BANDS.len()],
    facts: Option<Arc<Option<DocFacts>>>,
    relevance: Option<SegmentRelevance>,
    columns: Arc<SegmentColumns>,
    total: u64,
    top: Top,
    category_counts: Vec<u64>,
    brand_counts: Vec<u64>,
    price_counts: Vec<u64>,
}

impl Collector for SearchCollector<'_> {
    type Fruit = SearchFruit;
    type Child = SegmentSearch;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentSearch> {
        let columns = match self.cached {
            Some((generation, searcher)) => segment_table(&generation.columns, searcher, reader, false, || SegmentColumns::open(reader))?,
            None => Arc::new(SegmentColumns::open(reader)?),
        };
        let max_category = columns.category.max_value() as usize;
        let num_brands = columns.brand_names.len();
        let brand_allowed = self.brands.as_ref().map(|wanted| columns.brand_names.iter().map(|name| wanted.contains(name)).collect());
        let category_allowed = self.categories.as_ref().map(|allowed| {
            let mut bitmap = vec![false; max_category + 1];
            for &c in allowed {
                if let Some(slot) = bitmap.get_mut(c as usize) {
                    *slot = true;
                }
            }
            bitmap
        });
        let (min_price, max_price) = (self.min_price.unwrap_or(i64::MIN), self.max_price.unwrap_or(i64::MAX));
        let mut band_passes = [None; PRICE_BANDS.len()];
        for (band, slot) in band_passes.iter_mut().enumerate() {
            // band 0 also holds any price below its start
            let (from, to) = PRICE_BANDS[band];
            let lowest = if band == 0 { i64::MIN } else { from };
            let highest = to.map_or(i64::MAX, |to| to - 1);
            if lowest >= min_price && highest <= max_price {
                *slot = Some(true);
            } else if highest < min_price || lowest > max_price {
                *slot = Some(false);
            }
        }
        let mut search = SegmentSearch {
            segment,
            sort: self.sort,
            in_stock: self.in_stock,
            min_price,
            max_price,
            category_allowed,
            brand_allowed,
            band_passes,
            facts: None,
            relevance: self.relevance.map(|r| r.for_segment(reader)).transpose()?,
            columns,
            total: 0,
            top: Top::new(self.window),
            category_counts: vec![0; max_category + 1],
            brand_counts: vec![0; num_brands],
            price_counts: vec![0; PRICE_BANDS.len()],
        };
        if let Some((generation, searcher)) = self.cached {
            search.facts = Some(segment_table(&generation.facts, searcher, reader, false, || Ok(DocFacts::build(reader, &search)))?);
        }
        Ok(search)
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<SearchFruit>) -> tantivy::Result<SearchFruit> {
        let mut total = 0;
        let mut top = Top::new(self.window);
        let mut categories = std::collections::HashMap::new();
        let mut brands = std::collections::HashMap::<String, u64>::new();
        let mut price_bands = vec![0; PRICE_BANDS.len()];
        for fruit in fruits {
            total += fruit.total;
            for entry in fruit.top {
                top.push(entry);
            }
            for (c, n) in fruit.categories {
                *categories.entry(c).or_insert(0) += n;
            }
            for (b, n) in fruit.brands {
                *brands.entry(b).or_insert(0) += n;
            }
            for (slot, n) in price_bands.iter_mut().zip(fruit.price_bands) {
                *slot += n;
            }
        }
        Ok(SearchFruit { total, top: top.into_sorted(), categories, brands: brands.into_iter().collect(), price_bands })
    }
}

/// Documents handed over at once by tantivy's unscored search (its block size).
const BLOCK: usize = 64;

impl SegmentSearch {
    /// One document, its filter columns already read.
    #[inline]
    fn collect_values(&mut self, doc: DocId, score: Score, category: u64, price: i64, brand: Option<u64>) {
        let price_ok = price >= self.min_price && price <= self.max_price;
        if self.tally(category, brand, price_band(price), price_ok, 1, false) {
            self.offer(doc, score, price);
        }
    }

    /// A document that passes every filter, for the page.
    #[inline]
    fn offer(&mut self, doc: DocId, score: Score, price: i64) {
        let score = match &mut self.relevance {
            Some(relevance) => relevance.score(doc),
            None => score,
        };
        // Most matches of a broad query cannot make the page: that is decided on the first
        // part of the key, before the id column is read and the heap touched.
        let primary = self.primary_key(doc, score, price);
        if self.top.floor().is_some_and(|floor| primary < floor) {
            return;
        }
        let key = (primary, self.tie_key(doc));
        self.top.push(TopEntry { key, score, address: DocAddress::new(self.segment, doc) });
    }

    #[inline]
    fn fact_word(&self, doc: DocId) -> Option<u64> {
        self.facts.as_deref()?.as_ref().map(|facts| facts.words[doc as usize])
    }

    /// One document, from its `DocFacts` word: the price column is read only when the sort
    /// needs it or the price filter cuts through the document's band.
    #[inline]
    fn collect_fact(&mut self, doc: DocId, score: Score, word: u64) {
        let fact = DocFacts::unpack(word);
        if self.in_stock && !fact.in_stock {
            return;
        }
        let price_ok = match self.band_passes[fact.band] {
            Some(passes) => passes,
            None => {
                let price = self.columns.prices()[doc as usize];
                price >= self.min_price && price <= self.max_price
            }
        };
        if self.tally(fact.category, fact.brand, fact.band, price_ok, 1, false) {
            let price = match self.sort {
                Sort::PriceAsc | Sort::PriceDesc => self.columns.prices()[doc as usize],
                Sort::Relevance | Sort::Newest | Sort::Rating => 0,
            };
            self.offer(doc, score, price);
        }
    }

    /// Counts `n` documents of one category, brand and price band into the total and the
    /// facets, each facet under every filter but its own (`price_ok`: the price filter passes);
    /// `remove` takes them back out. True when they pass every filter.
    #[inline]
    fn tally(&mut self, category: u64, brand: Option<u64>, band: usize, price_ok: bool, n: u64, remove: bool) -> bool {
        let add = |count: &mut u64| if remove { *count -= n } else { *count += n };
        let category_ok = self.category_allowed.as_ref().is_none_or(|a| a.get(category as usize).copied().unwrap_or(false));
        let brand_ok = self.brand_allowed.as_ref().is_none_or(|a| brand.and_then(|b| a.get(b as usize).copied()).unwrap_or(false));
        if brand_ok && price_ok {
            add(&mut self.category_counts[category as usize]);
        }
        if category_ok
            && price_ok
            && let Some(b) = brand
        {
            add(&mut self.brand_counts[b as usize]);
        }
        if category_ok && brand_ok {
            add(&mut self.price_counts[band]);
        }
        let matches = category_ok && brand_ok && price_ok;
        if matches {
            add(&mut self.total);
        }
        matches
    }

    /// Takes the segment's deleted documents back out of counts that were worked out with them
    /// (the per-segment tables of browsing). No price filter applies there.
    fn take_out_deleted(&mut self, reader: &SegmentReader, alive: &tantivy::fastfield::AliveBitSet) {
        for doc in (0..reader.max_doc()).filter(|&doc| !alive.is_alive(doc)) {
            if self.in_stock && self.columns.available.get_val(doc) <= 0 {
                continue;
            }
            let (category, brand, price) =
                (self.columns.category.get_val(doc), self.columns.brand_ords.first(doc), self.columns.price.get_val(doc));
            self.tally(category, brand, price_band(price), true, 1, true);
        }
    }

    /// `docs` in the requested sort, best first, unscored (browsing).
    fn best_first(&self, docs: Vec<DocId>) -> Vec<DocId> {
        let mut keyed: Vec<((u64, u64), DocId)> =
            docs.into_iter().map(|doc| (self.sort_key(doc, 0.0, self.columns.price.get_val(doc)), doc)).collect();
        keyed.sort_unstable_by_key(|entry| Reverse(entry.0));
        keyed.into_iter().map(|(_, doc)| doc).collect()
    }

    /// Reads only the columns the requested sort needs.
    fn primary_key(&self, doc: DocId, score: Score, price: i64) -> u64 {
        match self.sort {
            Sort::Relevance | Sort::PriceAsc | Sort::PriceDesc => primary_key(self.sort, score, price, 0, 0.0, 0),
            Sort::Newest => primary_key(self.sort, score, price, self.columns.created.get_val(doc), 0.0, 0),
            Sort::Rating => {
                primary_key(self.sort, score, price, 0, self.columns.rating.get_val(doc), self.columns.rating_count.get_val(doc))
            }
        }
    }

    fn tie_key(&self, doc: DocId) -> u64 {
        tie_key(self.sort, self.columns.id.get_val(doc))
    }

    fn sort_key(&self, doc: DocId, score: Score, price: i64) -> (u64, u64) {
        (self.primary_key(doc, score, price), self.tie_key(doc))
    }
}

impl SegmentCollector for SegmentSearch {
    type Fruit = SearchFruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        if let Some(word) = self.fact_word(doc) {
            self.collect_fact(doc, score, word);
            return;
        }
        if self.in_stock && self.columns.available.get_val(doc) <= 0 {
            return;
        }
        let (category, price, brand) =
            (self.columns.category.get_val(doc), self.columns.price.get_val(doc), self.columns.brand_ords.first(doc));
        self.collect_values(doc, score, category, price, brand);
    }

    /// Unscored searches (browsing, and every sort but relevance) hand over blocks of
    /// documents: their columns are read in bulk, which decodes far faster than one by one.
    fn collect_block(&mut self, docs: &[DocId]) {
        if self.facts.as_deref().is_some_and(Option::is_some) {
            let mut words = [0u64; BLOCK];
            for docs in docs.chunks(BLOCK) {
                for (slot, &doc) in words.iter_mut().zip(docs) {
                    *slot = self.fact_word(doc).unwrap_or_default();
                }
                for (&doc, &word) in docs.iter().zip(&words) {
                    self.collect_fact(doc, 0.0, word);
                }
            }
            return;
        }
        let mut categories = [0u64; BLOCK];
        let mut prices = [0i64; BLOCK];
        let mut brands = [None; BLOCK];
        let mut available = [0i64; BLOCK];
        for docs in docs.chunks(BLOCK) {
            let n = docs.len();
            self.columns.category.get_vals(docs, &mut categories[..n]);
            self.columns.price.get_vals(docs, &mut prices[..n]);
            self.columns.brand_ords.first_vals(docs, &mut brands[..n]);
            if self.in_stock {
                self.columns.available.get_vals(docs, &mut available[..n]);
            }
            for i in 0..n {
                if self.in_stock && available[i] <= 0 {
                    continue;
                }
                self.collect_values(docs[i], 0.0, categories[i], prices[i], brands[i]);
            }
        }
    }

    fn harvest(self) -> SearchFruit {
        let mut brands = Vec::new();
        if let Some(column) = &self.columns.brand_column {
            for (ord, &n) in self.brand_counts.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let mut name = String::new();
                if column.ord_to_str(ord as u64, &mut name).unwrap_or(false) {
                    brands.push((name, n));
                }
            }
        }
        SearchFruit {
            total: self.total,
            top: self.top.into_sorted(),
            categories: self.category_counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(c, n)| (c as u64, *n)).collect(),
            brands,
            price_bands: self.price_counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_keys_keep_the_order() {
        let xs = [-3.5f32, -0.0, 0.0, 0.5, 1.0, 7.25, 1e9];
        for pair in xs.windows(2) {
            assert!(f32_key(pair[0]) <= f32_key(pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn an_index_of_an_older_schema_gives_way_to_an_empty_one() {
        let base = std::env::temp_dir().join(format!("emporium-schema-{}", uuid::Uuid::new_v4().simple()));
        let old = "gen-old";
        let mut older = Schema::builder();
        older.add_text_field("title", TEXT | STORED);
        let index = Index::create_in_dir(create_dir(&base, old).unwrap(), older.build()).unwrap();
        let mut writer: IndexWriter<TantivyDocument> = index.writer(15_000_000).unwrap();
        writer.add_document(TantivyDocument::default()).unwrap();
        writer.commit().unwrap();
        write_current(&base, old).unwrap();

        // a reindex process leaves CURRENT to the rebuild it makes
        let reindex = TantivyIndex::open_for_reindex(&base).unwrap();
        assert_ne!(reindex.generation_name(), old);
        assert_eq!(read_current(&base).unwrap().as_deref(), Some(old));

        let serving = TantivyIndex::open(&base, 1).unwrap();
        let name = serving.generation_name();
        assert_ne!(name, old);
        assert_eq!(read_current(&base).unwrap(), Some(name));
        let current = serving.inner.current.load();
        assert_eq!(current.reader.searcher().num_docs(), 0);
        assert!(current.checkpoint.lock().unwrap().is_none(), "no checkpoint: the indexer builds it from Postgres");
        drop(current);
        drop((serving, reindex));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// The packed `DocFacts` and the columns they replace must count and rank alike: every
    /// filter, stock, scored and unscored, each sort, over prices on and across band edges.
    /// 600 products over several segments: four titles, five brands (one empty), seven
    /// categories, prices on and across the band edges, some out of stock.
    fn small_catalogue() -> Generation {
        let index = Index::create_in_ram(schema());
        let fields = Fields::of(&index.schema()).unwrap();
        let mut writer: IndexWriter<TantivyDocument> = index.writer(15_000_000).unwrap();
        let brands = ["Sony", "Bose", "Dell", "", "LEGO"];
        let words = ["red kettle", "blue kettle", "red lamp", "green chair"];
        for id in 0..600i64 {
            let doc = IndexDoc {
                id,
                title: format!("{} {id}", words[(id % 4) as usize]),
                description: if id % 5 == 0 { "a red one".into() } else { "plain".into() },
                brand: brands[(id % 5) as usize].into(),
                category_id: 1 + id % 7,
                category_slug: format!("c{}", 1 + id % 7),
                category_path: vec![1 + id % 7],
                // on, just below and across the band edges
                price_minor: [999, 1_000, 2_499, 5_000, 9_999, 10_000, 24_999, 150_000][(id % 8) as usize] + id % 3,
                currency: "EUR".into(),
                available: id % 3 - 1,
                rating: (id % 50) as f64 / 10.0,
                rating_count: id % 11,
                created_at: chrono::DateTime::from_timestamp(1_700_000_000 + id * 37 % 600, 0).unwrap(),
            };
            writer.add_document(fields.document(&doc)).unwrap();
            if id % 200 == 199 {
                writer.commit().unwrap(); // several segments
            }
        }
        writer.commit().unwrap();
        let generation = Generation::from_index("gen-test", index).unwrap();
        generation.reader.reload().unwrap();
        assert!(generation.reader.searcher().segment_readers().len() >= 3);
        generation
    }

    /// categories, brands, lowest and highest price
    type Filter = (Option<&'static [u64]>, Option<&'static [&'static str]>, Option<i64>, Option<i64>);

    const FILTERS: [Filter; 5] = [
        (None, None, None, None),
        (Some(&[2, 3]), None, None, Some(9_999)),
        (None, Some(&["sony", "dell"]), Some(1_000), Some(25_000)),
        (Some(&[1, 4, 6]), Some(&["bose", "lego"]), Some(2_500), None),
        (None, None, Some(5_001), Some(10_000)),
    ];

    fn collector<'a>(
        cached: Option<(&'a Generation, &'a tantivy::Searcher)>,
        relevance: Option<&'a RelevanceTerms>,
        scoring: bool,
        filter: &Filter,
        in_stock: bool,
        sort: Sort,
    ) -> SearchCollector<'a> {
        let (categories, brands, min_price, max_price) = filter;
        SearchCollector {
            cached,
            relevance,
            scoring,
            categories: categories.map(|c| c.iter().copied().collect()),
            brands: brands.map(|b| b.iter().map(|b| b.to_string()).collect()),
            min_price: *min_price,
            max_price: *max_price,
            in_stock,
            sort,
            window: 25,
        }
    }

    fn assert_same_fruit(a: &SearchFruit, b: &SearchFruit, case: &str) {
        assert_eq!(a.total, b.total, "{case}");
        assert_eq!(a.price_bands, b.price_bands, "{case}");
        let sorted = |mut v: Vec<(String, u64)>| {
            v.sort();
            v
        };
        assert_eq!(sorted(a.brands.clone()), sorted(b.brands.clone()), "{case}");
        assert_eq!(a.categories, b.categories, "{case}");
        let top = |f: &SearchFruit| f.top.iter().map(|e| (e.key, e.score.to_bits(), e.address)).collect::<Vec<_>>();
        assert_eq!(top(a), top(b), "{case}");
    }

    /// The packed `DocFacts` and the columns they replace must count and rank alike: every
    /// filter, stock, scored and unscored, each sort, over prices on and across band edges.
    #[test]
    fn doc_facts_count_and_rank_as_the_columns_do() {
        let generation = small_catalogue();
        let searcher = generation.reader.searcher();
        let sorts = [Sort::Relevance, Sort::PriceAsc, Sort::PriceDesc, Sort::Newest, Sort::Rating];
        let mut compared = 0;
        for text in ["", "red", "red kettle"] {
            for sort in sorts {
                for filter in &FILTERS {
                    for in_stock in [false, true] {
                        let scoring = sort == Sort::Relevance && !text.is_empty();
                        let query = text_query(&generation, &searcher, text, scoring).unwrap();
                        let packed = collector(Some((&generation, &searcher)), None, scoring, filter, in_stock, sort);
                        let packed = searcher.search(&query, &packed).unwrap();
                        let columns = searcher.search(&query, &collector(None, None, scoring, filter, in_stock, sort)).unwrap();
                        assert_same_fruit(&packed, &columns, &format!("{text:?} {sort:?} {filter:?} {in_stock}"));
                        compared += usize::from(packed.total > 0);
                    }
                }
            }
        }
        assert!(generation.facts.lock().unwrap().len() >= 3, "the packed path was taken");
        assert!(compared > 100, "most cases match something: {compared}");
    }

    /// Relevance scored by the collector, for the documents that pass the filters, must match
    /// tantivy's scoring of the whole query: the same totals, facets, scores and order. (Up
    /// to two words the sums are added in the same order, so the scores are equal to the bit.)
    #[test]
    fn relevance_scored_after_the_filters_matches_tantivys_scoring() {
        let generation = small_catalogue();
        let searcher = generation.reader.searcher();
        let mut compared = 0;
        for text in ["red", "kettle red", "red one", "lamp", "sony", "plain chair"] {
            let terms = RelevanceTerms::new(&generation, &searcher, text).unwrap().expect("every word is known");
            let scored = text_query(&generation, &searcher, text, true).unwrap();
            let matched = text_query(&generation, &searcher, text, false).unwrap();
            for filter in &FILTERS {
                for in_stock in [false, true] {
                    let cached = Some((&generation, &searcher));
                    let by_tantivy = collector(cached, None, true, filter, in_stock, Sort::Relevance);
                    let by_tantivy = searcher.search(&scored, &by_tantivy).unwrap();
                    let ours = collector(cached, Some(&terms), false, filter, in_stock, Sort::Relevance);
                    let ours = searcher.search(&matched, &ours).unwrap();
                    assert_same_fruit(&ours, &by_tantivy, &format!("{text:?} {filter:?} {in_stock}"));
                    assert!(ours.top.iter().all(|e| e.score > 0.0), "{text:?}: every match is scored");
                    compared += usize::from(ours.total > 1);
                }
            }
        }
        assert!(compared > 40, "most cases match several products: {compared}");
        // a typo is left to tantivy's fuzzy scoring
        assert!(RelevanceTerms::new(&generation, &searcher, "kettel").unwrap().is_none());
    }

    #[test]
    fn top_keeps_the_largest_in_order() {
        let mut top = Top::new(3);
        for k in [5u64, 1, 9, 3, 7] {
            top.push(TopEntry { key: (k, 0), score: 0.0, address: DocAddress::new(0, k as u32) });
        }
        let keys: Vec<u64> = top.into_sorted().iter().map(|e| e.key.0).collect();
        assert_eq!(keys, vec![9, 7, 5]);
    }
}
