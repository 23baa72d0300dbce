//! Metric handles cached per label set, so the hot path of a layer is one
//! hash-map lookup and `record()` instead of building labels and resolving
//! them through the recorder (which sorts, hashes and looks them up in its
//! registry) on every call.
//!
//! # Which recorder the handles belong to
//!
//! A handle is registered against one recorder; recording through it after
//! another recorder took over would send the value to the wrong place. The
//! `metrics` facade picks the recorder per call: a thread-local one (set by
//! `metrics::with_local_recorder` / `set_default_local_recorder`, as tests
//! do), else the global one, else a no-op. A local recorder lives on a stack
//! or in a box and can be dropped and replaced by another one *at the same
//! address*, so an address is not a safe identity for it.
//!
//! The global recorder is different: it can be set once per process and is
//! leaked (`metrics` boxes it and never frees it), so its address is unique
//! for the life of the process and no other recorder can ever have it. The
//! caches therefore serve **only the global recorder**: before using a
//! cached handle a layer checks that the recorder `metrics` would use right
//! now is the global one (a thread-local read and a pointer comparison);
//! for any other recorder it takes the uncached path (labels built and
//! resolved per call, exactly as the `metrics` macros do).
//!
//! `metrics` does not say which recorder is the global one, and it may be
//! installed after a layer is built. A thread that never set a local
//! recorder sees the global one, so a freshly spawned thread asks
//! `metrics::with_recorder` and publishes the address ([`GLOBAL`]). This
//! probe runs in the background the first time a layer meets a recorder it
//! cannot place, then with a backoff (1 s doubling to 64 s) while no global
//! recorder is installed; meanwhile calls take the uncached path, so no
//! value is ever lost or misdirected. A zero-sized recorder (the no-op one)
//! is never cached: there is nothing to save and its address is not unique.
//!
//! # Bounds
//!
//! Label values come from peers and routes, so each cache holds at most
//! [`MAX_SERIES`] label sets and each label set at most [`MAX_OUTCOMES`]
//! outcomes (status code, error type); beyond that calls take the uncached
//! path (still recorded, just slower) and memory stays bounded whatever
//! a peer sends.
//!
//! # Exporters that drop idle series
//!
//! Some exporters remove a series nobody updated for a while
//! (`idle_timeout`); a handle kept past that would record into the removed
//! series. A cached label set is therefore re-resolved through the recorder
//! once it is [`REFRESH`] old, which keeps such exporters working for any
//! idle timeout longer than that.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use http::StatusCode;
use metrics::{Gauge, Histogram, Label, Recorder, SharedString};

use crate::labels;

/// The most label sets one cache holds.
pub(crate) const MAX_SERIES: usize = 1024;
/// The most outcomes (status code and error type combinations) one label
/// set caches a histogram for.
pub(crate) const MAX_OUTCOMES: usize = 16;
/// How long a cached label set is used before it is resolved again.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// The global recorder.

/// The address of the global recorder, once a probe found one installed.
static GLOBAL: OnceLock<usize> = OnceLock::new();

/// The identity of a recorder: its address, or `None` for a zero-sized
/// recorder (whose address is not unique).
fn identity(recorder: &dyn Recorder) -> Option<usize> {
    if std::mem::size_of_val(recorder) == 0 {
        return None;
    }
    Some((recorder as *const dyn Recorder).cast::<()>() as usize)
}

/// Whether the recorder `metrics` uses on this thread right now is the
/// global one, so cached handles may be used. Starts a background probe when
/// the global recorder is not known yet.
pub(crate) fn global_recorder_in_use() -> bool {
    let Some(current) = metrics::with_recorder(identity) else {
        return false;
    };
    match GLOBAL.get() {
        Some(global) => *global == current,
        None => {
            probe();
            false
        }
    }
}

struct Probe {
    running: bool,
    next: Option<Instant>,
    delay: Duration,
}

static PROBE: Mutex<Probe> = Mutex::new(Probe {
    running: false,
    next: None,
    delay: Duration::from_secs(1),
});

/// Learn the global recorder's address on a new thread (which has no local
/// recorder), at most one probe at a time, with a backoff while none is
/// installed.
fn probe() {
    let Ok(mut p) = PROBE.try_lock() else {
        return;
    };
    let now = Instant::now();
    if p.running || p.next.is_some_and(|next| now < next) {
        return;
    }
    p.running = true;
    let spawned = std::thread::Builder::new()
        .name("sinew-metrics-probe".into())
        .spawn(|| {
            let found = metrics::with_recorder(identity);
            if let Some(address) = found {
                let _ = GLOBAL.set(address);
            }
            probe_done();
        });
    if spawned.is_err() {
        drop(p);
        probe_done();
    }
}

fn probe_done() {
    let mut p = PROBE.lock().unwrap_or_else(PoisonError::into_inner);
    p.running = false;
    p.next = Some(Instant::now() + p.delay);
    p.delay = (p.delay * 2).min(Duration::from_secs(64));
}

// ---------------------------------------------------------------------------
// Outcomes: the labels only known when a call ends.

/// The name of an outcome label (a small id: outcomes are compared on every
/// call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    /// `http_response_status_code`
    StatusCode,
    /// `error_type`
    ErrorType,
    /// aio-request's `response_status`
    ResponseStatus,
    /// aio-request's `circuit_breaker`
    CircuitBreaker,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::StatusCode => crate::names::HTTP_RESPONSE_STATUS_CODE,
            Name::ErrorType => crate::names::ERROR_TYPE,
            Name::ResponseStatus => "response_status",
            Name::CircuitBreaker => "circuit_breaker",
        }
    }
}

/// The value of an outcome label.
#[derive(Debug, Clone, Copy, Eq)]
pub(crate) enum Value {
    /// A status code (`"200"`).
    Status(u16),
    /// A fixed value (`"timeout"`, `"True"`).
    Str(&'static str),
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Status(a), Value::Status(b)) => a == b,
            // The same constant is usually the same pointer.
            (Value::Str(a), Value::Str(b)) => std::ptr::eq(*a, *b) || a == b,
            _ => false,
        }
    }
}

impl Value {
    fn to_shared(self) -> SharedString {
        match self {
            Value::Str(s) => SharedString::const_str(s),
            Value::Status(code) => match StatusCode::from_u16(code) {
                Ok(status) => labels::status(status),
                Err(_) => SharedString::from(code.to_string()),
            },
        }
    }
}

/// The labels a call adds when it ends (at most two: a status and an error
/// type, or aio-request's status and breaker flag). `Copy`, so it is a
/// cheap cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The first `len` are set; the others stay at their default, so the
    /// derived equality is the outcome's.
    labels: [(Name, Value); 2],
    len: u8,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            labels: [(Name::StatusCode, Value::Status(0)); 2],
            len: 0,
        }
    }
}

impl Outcome {
    /// Add a label (a third one is ignored; no caller adds more than two).
    #[inline]
    pub(crate) fn push(&mut self, name: Name, value: Value) {
        if let Some(slot) = self.labels.get_mut(usize::from(self.len)) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    fn set(&self) -> &[(Name, Value)] {
        &self.labels[..usize::from(self.len)]
    }

    /// Whether a label called `name` is present.
    pub(crate) fn has(&self, name: Name) -> bool {
        self.set().iter().any(|(n, _)| *n == name)
    }

    /// `base` followed by the outcome's labels.
    pub(crate) fn labels(&self, base: &[Label]) -> Vec<Label> {
        let mut out = Vec::with_capacity(base.len() + 2);
        out.extend_from_slice(base);
        for (name, value) in self.set() {
            out.push(Label::new(name.as_str(), value.to_shared()));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// One label set.

/// The handles of one label set: the in-flight gauge, and a duration
/// histogram per outcome, registered on first use.
pub(crate) struct Series {
    /// The key's values joined (see [`Joined`]), to tell a hash collision
    /// from a hit.
    key: Box<[u8]>,
    name: &'static str,
    base: Vec<Label>,
    active: Option<Gauge>,
    outcomes: [OnceLock<(Outcome, Histogram)>; MAX_OUTCOMES],
    insert: Mutex<()>,
    resolved: Instant,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("name", &self.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Series {
    /// A label set of histogram `name` with labels `base`, and the in-flight
    /// gauge `active` (already registered). `key` identifies it in its cache.
    pub(crate) fn new(
        key: &[&str],
        name: &'static str,
        base: Vec<Label>,
        active: Option<Gauge>,
        now: Instant,
    ) -> Self {
        Series {
            key: key
                .iter()
                .flat_map(|k| k.bytes().chain([SEPARATOR]))
                .collect(),
            name,
            base,
            active,
            outcomes: Default::default(),
            insert: Mutex::new(()),
            resolved: now,
        }
    }

    fn matches(&self, name: &'static str, key: &Joined<'_>) -> bool {
        (std::ptr::eq(self.name, name) || self.name == name) && key.eq(&self.key)
    }

    /// The in-flight gauge, if this label set has one.
    pub(crate) fn active(&self) -> Option<&Gauge> {
        self.active.as_ref()
    }

    /// Record `seconds` for `outcome`. Registers the histogram through the
    /// current recorder the first time an outcome is seen: call only while
    /// [`global_recorder_in_use`].
    pub(crate) fn record(&self, outcome: &Outcome, seconds: f64) {
        if let Some(h) = self.find(outcome) {
            return h.record(seconds);
        }
        let _guard = self.insert.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in &self.outcomes {
            match slot.get() {
                Some((o, h)) if o == outcome => return h.record(seconds),
                Some(_) => {}
                None => {
                    let h = metrics::histogram!(self.name, outcome.labels(&self.base));
                    h.record(seconds);
                    let _ = slot.set((*outcome, h));
                    return;
                }
            }
        }
        // Every slot is taken: resolve per call.
        metrics::histogram!(self.name, outcome.labels(&self.base)).record(seconds);
    }

    fn find(&self, outcome: &Outcome) -> Option<&Histogram> {
        for slot in &self.outcomes {
            match slot.get() {
                Some((o, h)) if o == outcome => return Some(h),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// Record `seconds` for `outcome` without the cache, through whatever
    /// recorder is current.
    pub(crate) fn record_uncached(&self, outcome: &Outcome, seconds: f64) {
        metrics::histogram!(self.name, outcome.labels(&self.base)).record(seconds);
    }
}

// ---------------------------------------------------------------------------
// The cache.

/// Separates a key's values; never occurs in UTF-8, so a joined key splits
/// back unambiguously.
const SEPARATOR: u8 = 0xff;

/// A key's values joined by [`SEPARATOR`] in a stack buffer when they fit
/// (the usual case): one `write` to hash and one comparison to match,
/// instead of one per value.
struct Joined<'a> {
    parts: &'a [&'a str],
    buf: [u8; 128],
    /// The joined length, or `None` when the values do not fit `buf`.
    len: Option<usize>,
}

impl<'a> Joined<'a> {
    #[inline(always)]
    fn new(parts: &'a [&'a str]) -> Self {
        let mut buf = [0u8; 128];
        let mut len = Some(0);
        for part in parts {
            let Some(at) = len else { break };
            let bytes = part.as_bytes();
            len = match buf.get_mut(at..at + bytes.len() + 1) {
                Some(dst) => {
                    dst[..bytes.len()].copy_from_slice(bytes);
                    dst[bytes.len()] = SEPARATOR;
                    Some(at + bytes.len() + 1)
                }
                None => None,
            };
        }
        Joined { parts, buf, len }
    }

    fn bytes(&self) -> Option<&[u8]> {
        self.len.map(|len| &self.buf[..len])
    }

    /// Whether `stored` (the values joined) is this key.
    fn eq(&self, stored: &[u8]) -> bool {
        if let Some(bytes) = self.bytes() {
            return bytes == stored;
        }
        let mut rest = stored;
        for part in self.parts {
            let part = part.as_bytes();
            match rest.strip_prefix(part) {
                Some([SEPARATOR, tail @ ..]) => rest = tail,
                _ => return false,
            }
        }
        rest.is_empty()
    }
}

/// Passes the (already keyed-hashed) `u64` key through.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The label sets of one layer (shared by its clones and services), keyed by
/// their label values. Bounded by [`MAX_SERIES`].
pub(crate) struct SeriesCache {
    hasher: RandomState,
    map: RwLock<HashMap<u64, Arc<Series>, BuildHasherDefault<IdHasher>>>,
    cap: usize,
}

impl Default for SeriesCache {
    fn default() -> Self {
        SeriesCache::with_capacity(MAX_SERIES)
    }
}

impl fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesCache")
            .field("len", &self.len())
            .field("cap", &self.cap)
            .finish()
    }
}

impl SeriesCache {
    /// A cache of at most `cap` label sets.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        SeriesCache {
            hasher: RandomState::new(),
            map: RwLock::default(),
            cap,
        }
    }

    /// How many label sets are cached.
    pub(crate) fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn hash(&self, key: &Joined<'_>) -> u64 {
        // Keyed SipHash: a peer cannot aim label values at one bucket.
        let mut h = self.hasher.build_hasher();
        match key.bytes() {
            Some(bytes) => h.write(bytes),
            None => {
                for part in key.parts {
                    h.write(part.as_bytes());
                    h.write_u8(SEPARATOR);
                }
            }
        }
        h.finish()
    }

    /// The label set `key`, built with `make` (which registers its handles
    /// through the current recorder) when it is not cached or is
    /// [`REFRESH`] old. `None` when the cache is full (or on a 64-bit hash
    /// collision): resolve per call then.
    pub(crate) fn get(
        &self,
        name: &'static str,
        key: &[&str],
        now: Instant,
        make: impl FnOnce() -> Series,
    ) -> Option<Arc<Series>> {
        let joined = Joined::new(key);
        let key = &joined;
        let hash = self.hash(key);
        let fresh = |s: &Series| now.saturating_duration_since(s.resolved) < REFRESH;
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            match map.get(&hash) {
                Some(s) if !s.matches(name, key) => return None,
                Some(s) if fresh(s) => return Some(Arc::clone(s)),
                Some(_) => {}
                None if map.len() >= self.cap => return None,
                None => {}
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        match map.get(&hash) {
            Some(s) if !s.matches(name, key) => return None,
            Some(s) if fresh(s) => return Some(Arc::clone(s)),
            Some(_) => {}
            None if map.len() >= self.cap => return None,
            None => {}
        }
        let series = Arc::new(make());
        debug_assert!(series.matches(name, key), "a series built for another key");
        map.insert(hash, Arc::clone(&series));
        Some(series)
    }
}

/// The handles of one call: cached (the label set's [`Series`], valid for
/// the global recorder) or resolved per call (any other recorder, or a full
/// cache).
pub(crate) struct Handles {
    source: Source,
    /// The gauge was incremented and not yet decremented.
    active: bool,
}

enum Source {
    Cached(Arc<Series>),
    Uncached {
        name: &'static str,
        base: Vec<Label>,
        gauge: Option<Gauge>,
    },
}

/// The labels of a label set: the histogram's base labels and, when the
/// layer keeps one, the in-flight gauge's name and labels.
pub(crate) type LabelSet = (Vec<Label>, Option<(&'static str, Vec<Label>)>);

impl Handles {
    /// Resolve the handles of label set `key` of histogram `name` (`labels`
    /// builds its labels, only on a cache miss or when uncached) and
    /// increment its in-flight gauge.
    pub(crate) fn resolve(
        cache: &SeriesCache,
        key: &[&str],
        now: Instant,
        name: &'static str,
        labels: impl Fn() -> LabelSet,
    ) -> Handles {
        let cached = if global_recorder_in_use() {
            cache.get(name, key, now, || {
                let (base, gauge) = labels();
                let gauge = gauge.map(|(gauge, l)| metrics::gauge!(gauge, l));
                Series::new(key, name, base, gauge, now)
            })
        } else {
            None
        };
        let source = match cached {
            Some(series) => Source::Cached(series),
            None => {
                let (base, gauge) = labels();
                let gauge = gauge.map(|(gauge, l)| metrics::gauge!(gauge, l));
                Source::Uncached { name, base, gauge }
            }
        };
        let handles = Handles {
            source,
            active: true,
        };
        if let Some(g) = handles.gauge() {
            g.increment(1.0);
        }
        handles
    }

    fn gauge(&self) -> Option<&Gauge> {
        match &self.source {
            Source::Cached(s) => s.active(),
            Source::Uncached { gauge, .. } => gauge.as_ref(),
        }
    }

    /// Record the duration `seconds` of a call that ended with `outcome`.
    pub(crate) fn record(&self, outcome: &Outcome, seconds: f64) {
        match &self.source {
            // Another recorder may have become current on this thread since
            // the call started (a local one): the cached handles are the
            // global recorder's, so resolve through the current one then.
            Source::Cached(s) if global_recorder_in_use() => s.record(outcome, seconds),
            Source::Cached(s) => s.record_uncached(outcome, seconds),
            Source::Uncached { name, base, .. } => {
                metrics::histogram!(*name, outcome.labels(base)).record(seconds)
            }
        }
    }

    /// Decrement the in-flight gauge (once; later calls do nothing).
    pub(crate) fn release(&mut self) {
        if std::mem::replace(&mut self.active, false) {
            if let Some(g) = self.gauge() {
                g.decrement(1.0);
            }
        }
    }
}

impl fmt::Debug for Handles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles")
            .field("cached", &matches!(self.source, Source::Cached(_)))
            .finish_non_exhaustive()
    }
}

/// Writes a port's digits into a stack buffer, for cache keys.
pub(crate) struct PortStr([u8; 5], usize);

impl PortStr {
    pub(crate) fn new(port: u16) -> Self {
        let mut buf = [0u8; 5];
        let mut n = port;
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        PortStr(buf, i)
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[self.1..]).unwrap_or("0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "test_seconds";

    fn series_at(key: &[&str], now: Instant) -> Series {
        let base = vec![Label::new("peer", key[0].to_owned())];
        Series::new(key, T, base, None, now)
    }

    fn series(key: &[&str]) -> Series {
        series_at(key, Instant::now())
    }

    #[test]
    fn port_digits() {
        for p in [0u16, 7, 80, 443, 8080, 65535] {
            assert_eq!(PortStr::new(p).as_str(), p.to_string());
        }
    }

    #[test]
    fn long_values_hash_consistently() {
        let cache = SeriesCache::with_capacity(4);
        let now = Instant::now();
        let long = "x".repeat(300);
        for key in [[long.as_str(), "1"], ["1", long.as_str()]] {
            let first = cache.get(T, &key, now, || series_at(&key, now)).unwrap();
            let again = cache.get(T, &key, now, || panic!("cached")).unwrap();
            assert!(Arc::ptr_eq(&first, &again));
        }
        assert_eq!(cache.len(), 2);

        // Matching a key that does not fit the stack buffer, value by value.
        let stored = |parts: &[&str]| Series::new(parts, T, Vec::new(), None, now).key;
        let a = [long.as_str(), "1"];
        let joined = Joined::new(&a);
        assert!(joined.bytes().is_none());
        assert!(joined.eq(&stored(&a)));
        let long1 = format!("{long}1");
        assert!(!joined.eq(&stored(&[long1.as_str()])));
        assert!(!joined.eq(&stored(&[long.as_str(), "1", ""])));
        assert!(!joined.eq(&stored(&[long.as_str()])));
        let short = ["a", "1"];
        assert!(Joined::new(&short).eq(&stored(&short)));
        assert!(!Joined::new(&short).eq(&stored(&["a1"])));
    }

    #[test]
    fn bounded_and_keyed_by_every_value() {
        let cache = SeriesCache::with_capacity(3);
        let now = Instant::now();
        let a = cache
            .get(T, &["a", "1"], now, || series_at(&["a", "1"], now))
            .unwrap();
        let b = cache
            .get(T, &["a", "2"], now, || series_at(&["a", "2"], now))
            .unwrap();
        // Values are separated: "a1" + "" is not "a" + "1".
        let c = cache
            .get(T, &["a1", ""], now, || series_at(&["a1", ""], now))
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &b) && !Arc::ptr_eq(&a, &c));
        let again = cache.get(T, &["a", "1"], now, || panic!("cached")).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        // Full: a new key is not cached, known keys still are.
        assert!(cache
            .get(T, &["d", "1"], now, || series(&["d", "1"]))
            .is_none());
        assert_eq!(cache.len(), 3);
        assert!(cache
            .get(T, &["a", "2"], now, || panic!("cached"))
            .is_some());
        // Another metric with the same values is not served this entry.
        assert!(cache
            .get("other", &["a", "2"], now, || panic!("never built"))
            .is_none());
        // Old entries are resolved again, in place (the cache does not grow).
        let later = now + REFRESH;
        let refreshed = cache
            .get(T, &["a", "1"], later, || series_at(&["a", "1"], later))
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &refreshed));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    #[cfg(feature = "prometheus")]
    fn outcomes_are_cached_per_value_and_bounded() {
        let (recorder, handle) = crate::prometheus::PrometheusBuilder::new().build();
        metrics::with_local_recorder(&recorder, || {
            let s = series(&["svc"]);
            // More outcomes than slots: the ones beyond still record.
            for round in 0..3 {
                for code in 200..(200 + MAX_OUTCOMES as u16 + 8) {
                    let mut o = Outcome::default();
                    o.push(Name::StatusCode, Value::Status(code));
                    if round == 0 && code == 200 {
                        assert!(s.find(&o).is_none());
                    }
                    s.record(&o, 0.001);
                }
            }
            let mut o = Outcome::default();
            o.push(Name::StatusCode, Value::Status(200));
            assert!(s.find(&o).is_some());
            o.push(Name::ErrorType, Value::Str("x"));
            assert!(o.has(Name::ErrorType) && !Outcome::default().has(Name::ErrorType));
            s.record(&o, 0.001);
        });
        let text = handle.render();
        for code in 200..(200 + MAX_OUTCOMES as u16 + 8) {
            let line = format!(
                "test_seconds_count{{peer=\"svc\",http_response_status_code=\"{code}\"}} 3"
            );
            assert!(text.contains(&line), "{line} missing in\n{text}");
        }
        assert!(text.contains(
            r#"test_seconds_count{peer="svc",http_response_status_code="200",error_type="x"} 1"#
        ));
    }

    /// The exposition's samples by series (`name{labels}`).
    #[cfg(feature = "prometheus")]
    fn samples(text: &str) -> HashMap<&str, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series, value.trim().parse().ok()?))
            })
            .collect()
    }

    #[cfg(feature = "prometheus")]
    fn sample(text: &str, series: &str) -> Option<f64> {
        samples(text).get(series).copied()
    }

    /// The layers are built before the global recorder is installed (the
    /// only test in this binary that installs one: no other unit test
    /// records through the global recorder). Covers: calls before the
    /// install go nowhere, calls right after it are recorded while the
    /// probe runs, then the cache serves the global recorder with exact
    /// values per label set, beyond its bounds too, and a local recorder
    /// set later on the thread gets its own values (no cached handle leaks
    /// to it).
    #[test]
    #[cfg(feature = "prometheus")]
    fn global_recorder_installed_after_the_layers_are_built() {
        use std::borrow::Cow;
        use std::convert::Infallible;

        use http::{Request, Response};
        use sinew_core::Body;
        use tower::{Service, ServiceBuilder, ServiceExt};

        use crate::{MetricsLayer, ServerMetricsLayer};

        const CALL: &str = "http_client_request_duration_seconds";
        const ATTEMPT: &str = "http_client_attempt_duration_seconds";
        const SERVER: &str = "http_server_request_duration_seconds";

        // The status is the path: /503 answers 503.
        async fn backend(req: Request<Body>) -> Result<Response<()>, Infallible> {
            let status = req.uri().path()[1..].parse::<u16>().unwrap_or(200);
            Ok(Response::builder().status(status).body(()).unwrap())
        }
        let call_layer = MetricsLayer::call();
        let attempt_layer = MetricsLayer::attempt();
        let mut client = ServiceBuilder::new()
            .layer(call_layer.clone())
            .layer(attempt_layer.clone())
            .service_fn(backend);
        let server_layer =
            ServerMetricsLayer::new().route_fn(|p| Some(Cow::Owned(p.uri.path().to_owned())));
        let mut server = ServiceBuilder::new()
            .layer(server_layer.clone())
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut get = |host: &str, status: u16| {
            let req = Request::get(format!("http://{host}:8080/{status}"))
                .body(Body::empty())
                .unwrap();
            rt.block_on(async {
                let resp = client.ready().await.unwrap().call(req).await.unwrap();
                assert_eq!(resp.status().as_u16(), status);
            });
        };
        let series = |host: &str, status: u16| {
            let error = if status >= 500 {
                format!(r#",error_type="{status}""#)
            } else {
                String::new()
            };
            format!(
                r#"{{http_request_method="GET",server_address="{host}",server_port="8080",http_response_status_code="{status}"{error}}}"#
            )
        };

        // No recorder yet: recorded nowhere, and no probe (the no-op
        // recorder is never cached).
        for _ in 0..3 {
            get("early", 200);
        }
        assert!(!global_recorder_in_use());
        assert_eq!(call_layer.cache.len(), 0);

        let handle = crate::prometheus::PrometheusBuilder::new()
            .upkeep_interval(None)
            .install()
            .unwrap();
        // Right after the install: recorded (uncached until the probe has
        // found the global recorder).
        for _ in 0..5 {
            get("svc", 200);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !global_recorder_in_use() {
            assert!(
                Instant::now() < deadline,
                "the probe never found the recorder"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Cached from here on.
        for _ in 0..5 {
            get("svc", 200);
        }
        for _ in 0..4 {
            get("svc", 503);
        }
        assert_eq!(call_layer.cache.len(), 1);
        assert_eq!(attempt_layer.cache.len(), 1);
        let text = handle.render();
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("svc", 200))),
            Some(10.0)
        );
        assert_eq!(
            sample(&text, &format!("{ATTEMPT}_count{}", series("svc", 200))),
            Some(10.0)
        );
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("svc", 503))),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("early", 200))),
            None
        );
        let active = r#"http_client_active_requests{http_request_method="GET",server_address="svc",server_port="8080"}"#;
        assert_eq!(sample(&text, active), Some(0.0));

        // More outcomes than a label set caches, and more label sets than
        // the cache holds: every call still counted once, in its own series.
        let statuses = 200..(200 + MAX_OUTCOMES as u16 + 10);
        for _ in 0..2 {
            for status in statuses.clone() {
                get("many-outcomes", status);
            }
        }
        let hosts: Vec<String> = (0..MAX_SERIES + 50).map(|i| format!("h{i}")).collect();
        for host in &hosts {
            get(host, 204);
        }
        assert_eq!(call_layer.cache.len(), MAX_SERIES);
        assert_eq!(attempt_layer.cache.len(), MAX_SERIES);
        let text = handle.render();
        let all = samples(&text);
        for status in statuses {
            let s = series("many-outcomes", status);
            assert_eq!(all.get(&*format!("{CALL}_count{s}")), Some(&2.0), "{s}");
            assert_eq!(all.get(&*format!("{ATTEMPT}_count{s}")), Some(&2.0), "{s}");
        }
        for host in &hosts {
            let s = series(host, 204);
            assert_eq!(all.get(&*format!("{CALL}_count{s}")), Some(&1.0), "{s}");
        }

        // The server layer: routes beyond the cache's bound still recorded.
        let routes = MAX_SERIES + 20;
        for round in 0..2 {
            for i in 0..routes {
                let req = Request::get(format!("/r{i}")).body(()).unwrap();
                rt.block_on(async {
                    let resp = server.ready().await.unwrap().call(req).await.unwrap();
                    drop(resp);
                });
            }
            if round == 0 {
                assert_eq!(server_layer.cache.len(), MAX_SERIES);
            }
        }
        let text = handle.render();
        let all = samples(&text);
        for i in 0..routes {
            let s = format!(
                r#"{SERVER}_count{{http_request_method="GET",url_scheme="http",http_route="/r{i}",http_response_status_code="200"}}"#
            );
            assert_eq!(all.get(&*s), Some(&2.0), "{s}");
        }

        // A local recorder set on this thread takes precedence: cached
        // handles (the global recorder's) must not be used for it.
        let (local, local_handle) = crate::prometheus::PrometheusBuilder::new().build();
        {
            let _guard = metrics::set_default_local_recorder(&local);
            assert!(!global_recorder_in_use());
            get("svc", 200);
            get("svc", 503);
        }
        let local_text = local_handle.render();
        assert_eq!(
            sample(&local_text, &format!("{CALL}_count{}", series("svc", 200))),
            Some(1.0)
        );
        assert_eq!(
            sample(&local_text, &format!("{CALL}_count{}", series("svc", 503))),
            Some(1.0)
        );
        let text = handle.render();
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("svc", 200))),
            Some(10.0)
        );
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("svc", 503))),
            Some(4.0)
        );
        assert_eq!(sample(&text, active), Some(0.0));
        // And back on the global recorder, cached.
        assert!(global_recorder_in_use());
        get("svc", 200);
        let text = handle.render();
        assert_eq!(
            sample(&text, &format!("{CALL}_count{}", series("svc", 200))),
            Some(11.0)
        );
    }
}
