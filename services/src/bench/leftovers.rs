//! What a bench run makes outside its own process: scratch databases, queue
//! topologies, child processes and their directory. Each is registered when
//! made and removed when its run ends, or all at once when the bench is
//! interrupted (Ctrl-C, SIGTERM), so a stopped run leaves nothing behind.

use std::path::PathBuf;
use std::process::Child;
use std::sync::Mutex;

use sqlx::PgPool;
use verifyd_core::infra::amqp::Topology;

#[derive(Default)]
pub struct Leftovers {
    databases: Mutex<Vec<String>>,
    topologies: Mutex<Vec<Topology>>,
    queues: Mutex<Vec<String>>,
    /// Each child with its log file.
    children: Mutex<Vec<(Child, PathBuf)>>,
    directories: Mutex<Vec<PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Leftovers {
    pub fn database(&self, name: &str) {
        lock(&self.databases).push(name.to_owned());
    }

    pub fn topology(&self, topology: &Topology) {
        lock(&self.topologies).push(topology.clone());
    }

    pub fn queue(&self, name: &str) {
        lock(&self.queues).push(name.to_owned());
    }

    /// Keeps a child to stop, and where it logs; returns its pid.
    pub fn child(&self, child: Child, log: PathBuf) -> u32 {
        let pid = child.id();
        lock(&self.children).push((child, log));
        pid
    }

    /// The last lines the child `pid` logged, to quote in an error (the
    /// log goes with the run's directory).
    pub fn log_of(&self, pid: u32) -> String {
        let children = lock(&self.children);
        let Some((_, log)) = children.iter().find(|(c, _)| c.id() == pid) else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!(
            "\n--- last lines of {} ---\n{tail}",
            log.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )
    }

    pub fn directory(&self, dir: PathBuf) {
        lock(&self.directories).push(dir);
    }

    /// An error, with the end of its log, when the child `pid` has exited.
    pub fn ensure_running(&self, pid: u32) -> anyhow::Result<()> {
        let exited =
            lock(&self.children).iter_mut().find(|(c, _)| c.id() == pid).and_then(|(c, _)| c.try_wait().ok().flatten());
        if let Some(status) = exited {
            anyhow::bail!("a verifyd child process exited ({status}){}", self.log_of(pid));
        }
        Ok(())
    }

    /// Stops every child (SIGKILL: their state is thrown away with the run's
    /// database and queues) and waits for each.
    pub fn stop_children(&self) {
        for (mut child, _) in std::mem::take(&mut *lock(&self.children)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes everything registered: children first, so nothing holds the
    /// database or consumes from the queues as they go.
    pub async fn remove(&self, admin_url: &str, amqp_url: &str) {
        self.stop_children();
        let databases = std::mem::take(&mut *lock(&self.databases));
        if !databases.is_empty()
            && let Ok(pool) = PgPool::connect(admin_url).await
        {
            for name in databases {
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
            }
            pool.close().await;
        }
        let topologies = std::mem::take(&mut *lock(&self.topologies));
        let queues = std::mem::take(&mut *lock(&self.queues));
        if !(topologies.is_empty() && queues.is_empty())
            && let Ok(conn) = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await
        {
            for topology in topologies {
                if let Ok(ch) = conn.create_channel().await {
                    topology.delete(&ch).await;
                    let _ = ch.close(200, "removed".into()).await;
                }
            }
            for queue in queues {
                if let Ok(ch) = conn.create_channel().await {
                    let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
                    let _ = ch.close(200, "removed".into()).await;
                }
            }
            let _ = conn.close(200, "bench done".into()).await;
        }
        for dir in std::mem::take(&mut *lock(&self.directories)) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A run that ends by a panic still stops its children (SIGKILL of the
/// bench itself cannot: they would then serve on until stopped by hand).
impl Drop for Leftovers {
    fn drop(&mut self) {
        self.stop_children();
    }
}
