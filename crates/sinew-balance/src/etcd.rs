//! The etcd registry: [`EtcdDiscovery`] watches the instances of a service,
//! [`Registration`] puts one instance there under a lease.
//!
//! The layout (shared with any other registrar): one key per instance,
//! `/sinew/services/<service>/<instance-id>`, whose value is JSON
//! `{"address": "host:port", "weight": 1.0, "metadata": {}}` (`weight` and
//! `metadata` optional).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, PutOptions, WatchOptions,
};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::source::{send_all, spawn_on_poll, Announced, Discovered, Sender, SourceError};
use crate::Endpoint;

/// Where the instances of `service` live.
pub fn service_prefix(service: &str) -> String {
    format!("/sinew/services/{service}/")
}

/// Whether `name` can be one segment of a registry key (a service name or
/// an instance id): non-empty, without `/`.
pub fn is_key_segment(name: &str) -> bool {
    !name.is_empty() && !name.contains('/')
}

/// The JSON value of an instance key. Fields this version does not know
/// are ignored, so a newer writer's records still count.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    address: String,
    #[serde(default = "one")]
    weight: f64,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn one() -> f64 {
    1.0
}

impl Record {
    fn of(endpoint: &Endpoint) -> Self {
        Record {
            address: endpoint.address.clone(),
            weight: endpoint.weight,
            metadata: endpoint
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
        }
    }

    fn endpoint(self) -> Result<Endpoint, String> {
        if !self.weight.is_finite() || self.weight < 0.0 {
            return Err(format!(
                "weight {} is not a finite number >= 0",
                self.weight
            ));
        }
        if crate::endpoints::EndpointState::new(Endpoint::new(self.address.clone())).is_none() {
            return Err(format!("address {:?} is not host:port", self.address));
        }
        let mut e = Endpoint::new(self.address).weight(self.weight);
        for (k, v) in self.metadata {
            // Strings as they are; other JSON values as their JSON text.
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            e.metadata.insert(k, v);
        }
        Ok(e)
    }
}

/// The largest instance record read (a record is a short JSON object).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// The most instances of one service followed; more are skipped and reported.
pub const MAX_INSTANCES: usize = 10_000;

fn parse(kv: &KeyValue) -> Result<(String, Endpoint), SourceError> {
    let raw_key = kv.key();
    let key = String::from_utf8_lossy(&raw_key[..raw_key.len().min(512)]).into_owned();
    if kv.value().len() > MAX_RECORD_BYTES {
        return Err(SourceError::InvalidRecord {
            key,
            reason: format!("the record is larger than {MAX_RECORD_BYTES} bytes"),
        });
    }
    let record: Record =
        serde_json::from_slice(kv.value()).map_err(|e| SourceError::InvalidRecord {
            key: key.clone(),
            reason: e.to_string(),
        })?;
    let endpoint = record
        .endpoint()
        .map_err(|reason| SourceError::InvalidRecord {
            key: key.clone(),
            reason,
        })?;
    Ok((key, endpoint))
}

fn unreachable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unreachable {
        source_name: "etcd".into(),
        reason: e.to_string(),
    }
}

fn options(timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_keep_alive(Duration::from_secs(10), timeout)
}

/// Watches `/sinew/services/<service>/` in etcd and turns what is there into
/// endpoint changes for [`LoadBalanceLayer::discover`](crate::LoadBalanceLayer::discover).
///
/// It reads the whole prefix, then watches from the revision it read at, so
/// nothing between the two is missed. When the connection drops it
/// reconnects (backing off up to [`EtcdDiscovery::max_backoff`]), reads
/// the prefix again and announces only the difference, so a watcher
/// survives an etcd restart. A record that is not valid JSON of the layout
/// above is skipped (reported as [`SourceError::InvalidRecord`]); the others
/// stay.
#[derive(Debug, Clone)]
pub struct EtcdDiscovery {
    endpoints: Vec<String>,
    service: String,
    timeout: Duration,
    max_backoff: Duration,
}

impl EtcdDiscovery {
    /// Watch `service` through the etcd client URLs `endpoints`
    /// (`http://127.0.0.1:2379`).
    pub fn new<I, S>(endpoints: I, service: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdDiscovery {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            service: service.into(),
            timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The connect and request timeout (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest wait between reconnection attempts (default 5 s; the
    /// first is 100 ms, doubling).
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The stream of changes. The watch runs in a task spawned on the
    /// current tokio runtime when the stream is first polled, and ends when
    /// the stream is dropped.
    pub fn into_stream(self) -> impl Stream<Item = Discovered> + Send + 'static {
        spawn_on_poll(move |tx| async move { self.run(&tx).await })
    }

    async fn run(&self, tx: &Sender) {
        let prefix = service_prefix(&self.service);
        let mut announced = Announced::default();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.session(&prefix, &mut announced, tx).await {
                Ok(Ended::Listener) => return,
                Ok(Ended::Resync) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, service = %self.service, "etcd watch lost; reconnecting");
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
        }
    }

    /// One connection: read the prefix, then follow the watch until it
    /// fails.
    async fn session(
        &self,
        prefix: &str,
        announced: &mut Announced,
        tx: &Sender,
    ) -> Result<Ended, SourceError> {
        let connect = Client::connect(&self.endpoints, Some(options(self.timeout)));
        let mut client = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| unreachable("connect timed out"))?
            .map_err(unreachable)?;
        let get = client.get(prefix, Some(GetOptions::new().with_prefix()));
        let resp = tokio::time::timeout(self.timeout, get)
            .await
            .map_err(|_| unreachable("read timed out"))?
            .map_err(unreachable)?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut instances = BTreeMap::new();
        for kv in resp.kvs() {
            match parse(kv).and_then(|(key, e)| room(&instances, key, e)) {
                Ok((key, e)) => {
                    instances.insert(key, e);
                }
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return Ok(Ended::Listener);
                    }
                }
            }
        }
        if !send_all(tx, announced.changes(by_address(&instances))).await {
            return Ok(Ended::Listener);
        }
        let mut watch = client
            .watch(
                prefix,
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await
            .map_err(unreachable)?;
        loop {
            let Some(resp) = watch.message().await.map_err(unreachable)? else {
                return Err(unreachable("the watch stream ended"));
            };
            if resp.canceled() || resp.compact_revision() > 0 {
                // Fell behind a compaction: read everything again.
                tracing::info!(service = %self.service, "etcd watch canceled; resynchronising");
                return Ok(Ended::Resync);
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => match parse(kv).and_then(|(key, e)| room(&instances, key, e))
                    {
                        Ok((key, e)) => {
                            instances.insert(key, e);
                        }
                        Err(e) => {
                            instances.remove(&*String::from_utf8_lossy(kv.key()));
                            if tx.send(Err(e)).await.is_err() {
                                return Ok(Ended::Listener);
                            }
                        }
                    },
                    EventType::Delete => {
                        instances.remove(&*String::from_utf8_lossy(kv.key()));
                    }
                }
            }
            if !send_all(tx, announced.changes(by_address(&instances))).await {
                return Ok(Ended::Listener);
            }
        }
    }
}

/// `(key, endpoint)` back when there is room for it: a known key, or fewer
/// than [`MAX_INSTANCES`].
fn room(
    instances: &BTreeMap<String, Endpoint>,
    key: String,
    e: Endpoint,
) -> Result<(String, Endpoint), SourceError> {
    if instances.len() >= MAX_INSTANCES && !instances.contains_key(&key) {
        return Err(SourceError::InvalidRecord {
            key,
            reason: format!("more than {MAX_INSTANCES} instances: this one is not followed"),
        });
    }
    Ok((key, e))
}

enum Ended {
    /// Nobody listens any more.
    Listener,
    /// Read the prefix again.
    Resync,
}

/// Instances keyed by address (two instance keys with one address are one
/// endpoint: the later key wins).
fn by_address(instances: &BTreeMap<String, Endpoint>) -> BTreeMap<String, Endpoint> {
    instances
        .values()
        .map(|e| (e.address.clone(), e.clone()))
        .collect()
}

/// Why registering failed.
#[derive(Debug)]
pub struct RegistrationError(String);

impl std::fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd registration failed: {}", self.0)
    }
}

impl std::error::Error for RegistrationError {}

/// One instance registered in etcd under a lease (Nacos-style ephemeral
/// instance): a background task keeps the lease alive; dropping the handle
/// (or [`Registration::deregister`]) revokes it, which deletes the key. If
/// the process dies, keep-alives stop and etcd deletes the key when the
/// lease's TTL runs out.
///
/// When etcd restarts or the lease is lost, the task reconnects and, if
/// the lease is gone, registers again under a new one.
#[derive(Debug)]
pub struct Registration {
    key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// Put `endpoint` at `/sinew/services/<service>/<instance_id>` under a
    /// lease of `ttl` (whole seconds, at least 1; etcd may round it up to
    /// its minimum), kept alive every third of it.
    pub async fn register<I, S>(
        etcd: I,
        service: &str,
        instance_id: &str,
        endpoint: &Endpoint,
        ttl: Duration,
    ) -> Result<Self, RegistrationError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        if !is_key_segment(service) {
            return Err(RegistrationError(format!(
                "service name {service:?} must be non-empty without '/'"
            )));
        }
        if !is_key_segment(instance_id) {
            return Err(RegistrationError(format!(
                "instance id {instance_id:?} must be non-empty without '/'"
            )));
        }
        let value = serde_json::to_vec(&Record::of(endpoint))
            .map_err(|e| RegistrationError(e.to_string()))?;
        if Record::of(endpoint).endpoint().is_err() {
            return Err(RegistrationError(format!(
                "endpoint {:?} is not host:port with a weight >= 0",
                endpoint.address
            )));
        }
        let keeper = Keeper {
            endpoints: etcd.into_iter().map(Into::into).collect(),
            key: format!("{}{instance_id}", service_prefix(service)),
            value,
            ttl: ttl.as_secs().max(1) as i64,
            timeout: Duration::from_secs(5),
        };
        let (mut client, lease) = keeper
            .put()
            .await
            .map_err(|e| RegistrationError(e.to_string()))?;
        let key = keeper.key.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut lease = lease;
            let stop = tokio::select! {
                () = keeper.keep(&mut client, &mut lease) => false,
                _ = stopped => true,
            };
            if stop {
                // Deregister: revoking the lease deletes the key.
                let _ = tokio::time::timeout(keeper.timeout, client.lease_revoke(lease)).await;
            }
        });
        tracing::info!(key = %key, "registered in etcd");
        Ok(Registration {
            key,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The etcd key of this instance.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Remove the instance now and wait until etcd has been told (or the
    /// request timed out).
    pub async fn deregister(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // The task revokes the lease and ends; nothing to wait for here.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the keep-alive task needs.
struct Keeper {
    endpoints: Vec<String>,
    key: String,
    value: Vec<u8>,
    ttl: i64,
    timeout: Duration,
}

impl Keeper {
    /// Connect, grant a lease and put the key under it.
    async fn put(&self) -> Result<(Client, i64), SourceError> {
        let work = async {
            let mut client = Client::connect(&self.endpoints, Some(options(self.timeout)))
                .await
                .map_err(unreachable)?;
            let lease = client
                .lease_grant(self.ttl, None)
                .await
                .map_err(unreachable)?
                .id();
            client
                .put(
                    self.key.as_bytes(),
                    self.value.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
                .map_err(unreachable)?;
            Ok::<_, SourceError>((client, lease))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| unreachable("etcd did not answer in time"))?
    }

    /// Keep `lease` alive for ever; after a failure, reconnect and register
    /// again.
    async fn keep(&self, client: &mut Client, lease: &mut i64) {
        let every = Duration::from_millis((self.ttl as u64 * 1000 / 3).max(200));
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.keep_once(client, *lease, every).await {
                Ok(()) => {}
                Err(e) => tracing::warn!(key = %self.key, error = %e, "etcd keep-alive failed"),
            }
            // The lease is gone or the connection broke: register again.
            loop {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                match self.put().await {
                    Ok((c, l)) => {
                        *client = c;
                        *lease = l;
                        backoff = Duration::from_millis(100);
                        tracing::info!(key = %self.key, "registered in etcd again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(key = %self.key, error = %e, "etcd registration retry failed")
                    }
                }
            }
        }
    }

    /// Send keep-alives until the lease is gone (`Ok`) or etcd cannot be
    /// reached (`Err`).
    async fn keep_once(
        &self,
        client: &mut Client,
        lease: i64,
        every: Duration,
    ) -> Result<(), SourceError> {
        let (mut keeper, mut responses) =
            client.lease_keep_alive(lease).await.map_err(unreachable)?;
        loop {
            keeper.keep_alive().await.map_err(unreachable)?;
            let answer = tokio::time::timeout(self.timeout, responses.message())
                .await
                .map_err(|_| unreachable("keep-alive not answered in time"))?
                .map_err(unreachable)?;
            match answer {
                Some(r) if r.ttl() > 0 => {}
                // TTL 0: etcd no longer knows the lease (it expired).
                Some(_) => return Ok(()),
                None => return Err(unreachable("keep-alive stream ended")),
            }
            tokio::time::sleep(every).await;
        }
    }
}
