//! The compose cluster's nodes as the campaign touches them: containers
//! found by their compose labels, killed, paused and started with the
//! `docker` CLI; network partitions as `iptables` rules in the host's
//! DOCKER-USER chain (the containers share one bridge, and the host
//! filters bridged traffic); data read and damaged through the volumes'
//! mount points.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

/// Every rule the campaign adds carries this comment and the project name,
/// so healing removes exactly this cluster's rules.
const RULE_TAG: &str = "baton-campaign";

/// One node of the compose cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRef {
    /// The compose service, e.g. `broker-2`.
    pub service: String,
    /// Its fixed address on the cluster network.
    pub ip: Ipv4Addr,
}

/// The cluster: compose project name and the fixed addressing of
/// docker-compose.yml.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The compose project (`COMPOSE_PROJECT_NAME`, `baton` by `.env`).
    pub project: String,
    /// The first three octets of the cluster network, e.g. `172.28.0`.
    pub net: String,
}

impl Cluster {
    /// Broker `id` (1-3): 172.28.0.1x.
    pub fn broker(&self, id: i32) -> NodeRef {
        self.node(&format!("broker-{id}"), 10 + id)
    }

    /// Controller `id` (1-3): 172.28.0.2x.
    pub fn controller(&self, id: i32) -> NodeRef {
        self.node(&format!("controller-{id}"), 20 + id)
    }

    fn node(&self, service: &str, host: i32) -> NodeRef {
        NodeRef {
            service: service.to_string(),
            ip: format!("{}.{host}", self.net).parse().expect("cluster net"),
        }
    }

    /// Bootstrap list as advertised inside and outside the containers.
    pub fn bootstrap(&self) -> String {
        (1..=3)
            .map(|id| format!("{}:9092", self.broker(id).ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node, brokers first.
    pub fn nodes(&self) -> Vec<NodeRef> {
        let brokers = (1..=3).map(|id| self.broker(id));
        brokers
            .chain((1..=3).map(|id| self.controller(id)))
            .collect()
    }

    /// The container id of `node`, running or not.
    pub fn container(&self, node: &NodeRef) -> anyhow::Result<String> {
        let out = docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={}", node.service),
        ])?;
        let id = out.lines().next().unwrap_or_default().trim().to_string();
        anyhow::ensure!(!id.is_empty(), "no container for {}", node.service);
        Ok(id)
    }

    /// kill -9.
    pub fn kill(&self, node: &NodeRef) -> anyhow::Result<()> {
        docker(&["kill", "-s", "KILL", &self.container(node)?]).map(drop)
    }

    /// Starts a stopped node (a no-op if it runs).
    pub fn start(&self, node: &NodeRef) -> anyhow::Result<()> {
        docker(&["start", &self.container(node)?]).map(drop)
    }

    /// SIGTERM, then start again: a clean restart.
    pub fn restart(&self, node: &NodeRef) -> anyhow::Result<()> {
        docker(&["restart", "-t", "10", &self.container(node)?]).map(drop)
    }

    /// Freezes every process of the node (cgroup freezer).
    pub fn pause(&self, node: &NodeRef) -> anyhow::Result<()> {
        docker(&["pause", &self.container(node)?]).map(drop)
    }

    /// Thaws a paused node.
    pub fn unpause(&self, node: &NodeRef) -> anyhow::Result<()> {
        docker(&["unpause", &self.container(node)?]).map(drop)
    }

    /// Whether the node's container runs (and is not paused).
    pub fn running(&self, node: &NodeRef) -> bool {
        let Ok(id) = self.container(node) else {
            return false;
        };
        docker(&["inspect", "-f", "{{.State.Status}}", &id]).is_ok_and(|s| s.trim() == "running")
    }

    fn rule_tag(&self) -> String {
        format!("{RULE_TAG}-{}", self.project)
    }

    /// Drops all traffic between `a` and `b`, both ways.
    pub fn cut(&self, a: &NodeRef, b: &NodeRef) -> anyhow::Result<()> {
        let tag = self.rule_tag();
        for (src, dst) in [(a.ip, b.ip), (b.ip, a.ip)] {
            iptables(&[
                "-I",
                "DOCKER-USER",
                "-s",
                &src.to_string(),
                "-d",
                &dst.to_string(),
                "-m",
                "comment",
                "--comment",
                &tag,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    /// Removes every rule the campaign added.
    pub fn heal_network(&self) -> anyhow::Result<()> {
        let rules = run("iptables", &["-S", "DOCKER-USER"])?;
        let tag = self.rule_tag();
        // The tag ends the comment: `-baton` must not match `-baton2`'s.
        let ours = |r: &&str| r.split_whitespace().any(|w| w.trim_matches('"') == tag);
        for rule in rules.lines().filter(ours) {
            let Some(spec) = rule.strip_prefix("-A ") else {
                continue;
            };
            let mut args = vec!["-D"];
            args.extend(shell_words(spec));
            iptables(&args)?;
        }
        Ok(())
    }

    /// Undoes every fault: rules removed, nodes thawed and started.
    pub fn heal_all(&self) -> anyhow::Result<()> {
        self.heal_network()?;
        for node in self.nodes() {
            let id = self.container(&node)?;
            let status = docker(&["inspect", "-f", "{{.State.Status}}", &id])?;
            match status.trim() {
                "paused" => self.unpause(&node)?,
                "running" => {}
                _ => self.start(&node)?,
            }
        }
        Ok(())
    }

    /// The host path of the node's `/data` volume.
    pub fn data_dir(&self, node: &NodeRef) -> anyhow::Result<PathBuf> {
        let volume = format!("{}_{}", self.project, node.service);
        let out = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])?;
        Ok(PathBuf::from(out.trim()))
    }

    /// A file of the node's data directory, read through docker (works
    /// whether or not the container runs).
    pub fn read_file(&self, node: &NodeRef, path: &str) -> anyhow::Result<Vec<u8>> {
        let dir = tempfile::tempdir()?;
        let dest = dir.path().join("file");
        let source = format!("{}:{path}", self.container(node)?);
        docker(&["cp", &source, &dest.display().to_string()])?;
        Ok(std::fs::read(dest)?)
    }
}

/// Splits an `iptables -S` rule into arguments; the only quoting it uses
/// is double quotes around comments.
fn shell_words(spec: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut rest = spec.trim();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            words.push(&quoted[..end]);
            rest = quoted.get(end + 1..).unwrap_or("").trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            words.push(&rest[..end]);
            rest = rest[end..].trim_start();
        }
    }
    words
}

fn iptables(args: &[&str]) -> anyhow::Result<()> {
    run("iptables", args).map(drop)
}

fn docker(args: &[&str]) -> anyhow::Result<String> {
    run("docker", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_split_like_the_shell_would() {
        let rule = r#"DOCKER-USER -s 172.28.0.11/32 -d 172.28.0.21/32 -m comment --comment "baton-campaign-baton" -j DROP"#;
        assert_eq!(
            shell_words(rule),
            vec![
                "DOCKER-USER",
                "-s",
                "172.28.0.11/32",
                "-d",
                "172.28.0.21/32",
                "-m",
                "comment",
                "--comment",
                "baton-campaign-baton",
                "-j",
                "DROP"
            ]
        );
    }

    #[test]
    fn nodes_have_the_compose_files_addresses() {
        let c = Cluster {
            project: "baton".into(),
            net: "172.28.0".into(),
        };
        assert_eq!(c.broker(2).ip.to_string(), "172.28.0.12");
        assert_eq!(c.controller(3).ip.to_string(), "172.28.0.23");
        assert_eq!(
            c.bootstrap(),
            "172.28.0.11:9092,172.28.0.12:9092,172.28.0.13:9092"
        );
    }
}
