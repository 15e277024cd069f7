//! A fleet on this machine: a hub and member control planes (each its own etcd and
//! kube-apiserver from `scripts/control-plane`, started at once), the hub's side from the chart
//! (`fleet.hub.*`: mailboxes, agent identities, MemberClusters), each agent's hub kubeconfig
//! holding only a token of its own ServiceAccount there, minted by the hub's API server.

use std::path::PathBuf;

use super::{Cluster, Operator, OperatorOpts, apply_chart_rbac, kubectl_ok, text};

/// One member cluster.
pub struct Member {
    /// Its name on the hub.
    pub name: String,
    /// Its own control plane.
    pub cluster: &'static Cluster,
    /// A kubeconfig for the hub with its agent's token (nothing else).
    pub hub_kubeconfig: PathBuf,
}

/// A hub and its members.
pub struct Fleet {
    pub hub: &'static Cluster,
    pub members: Vec<Member>,
}

/// The mailbox namespace of a member on the hub.
pub fn mailbox(member: &str) -> String {
    format!("deprovisioner-member-{member}")
}

impl Fleet {
    /// Starts the hub and one control plane per member (at once), and sets up the hub's side of
    /// each member as the chart does, with the member's labels.
    pub fn start(members: &[(&str, &[(&str, &str)])]) -> Fleet {
        let clusters: Vec<&'static Cluster> = std::thread::scope(|s| {
            let started: Vec<_> = (0..=members.len()).map(|_| s.spawn(Cluster::start)).collect();
            started.into_iter().map(|h| &*Box::leak(Box::new(h.join().expect("a control plane started")))).collect()
        });
        let hub = clusters[0];
        apply_chart_rbac(hub, &["fleet.hub.enabled=true"]);
        let mut sets = vec!["fleet.hub.enabled=true".to_string()];
        for (i, (name, labels)) in members.iter().enumerate() {
            sets.push(format!("fleet.hub.members[{i}].name={name}"));
            for (k, v) in labels.iter() {
                sets.push(format!("fleet.hub.members[{i}].labels.{k}={v}"));
            }
        }
        apply_chart_template(hub, "templates/fleet-hub.yaml", &sets);
        let members = members
            .iter()
            .zip(&clusters[1..])
            .map(|((name, _), cluster)| Member {
                name: name.to_string(),
                cluster,
                hub_kubeconfig: agent_kubeconfig(hub, name),
            })
            .collect();
        Fleet { hub, members }
    }

    /// The hub's operator (`--fleet-hub`), with the chart's hub RBAC.
    pub fn hub_operator(&self, args: &[&str]) -> Operator {
        Operator::start(OperatorOpts::on(self.hub).args(&["--fleet-hub"]).args(args))
    }

    /// Member `i`'s operator running its agent, heartbeat every second.
    pub fn agent(&self, i: usize) -> Operator {
        let m = &self.members[i];
        Operator::start(OperatorOpts::on(m.cluster).args(&[
            "--hub-kubeconfig",
            m.hub_kubeconfig.to_str().unwrap(),
            "--member-name",
            &m.name,
            "--fleet-heartbeat",
            "1s",
            "--fleet-inventory-every",
            "1s",
        ]))
    }
}

/// Renders one template of the chart (release "deprovisioner" in namespace "deprovisioner") with
/// `--set` values and applies it to `c`.
pub fn apply_chart_template(c: &Cluster, template: &str, sets: &[String]) {
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    super::apply_chart(c, template, &sets);
}

/// A kubeconfig for the hub holding only a token of member `name`'s agent ServiceAccount (minted
/// by the hub's API server, as `kubectl create token` does in a real setup).
pub fn agent_kubeconfig(hub: &Cluster, name: &str) -> PathBuf {
    let out = kubectl_ok(hub, &["create", "token", "agent", "-n", &mailbox(name), "--duration", "2h"]);
    let token = text(&out.stdout).trim().to_string();
    token_kubeconfig(hub, &token, &format!("hub-{name}"), &mailbox(name))
}

/// A kubeconfig for `c`'s API server authenticating with `token` only, written as `<file>.kubeconfig`.
pub fn token_kubeconfig(c: &Cluster, token: &str, file: &str, namespace: &str) -> PathBuf {
    let admin = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let server = admin.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string();
    let ca = admin.lines().find_map(|l| l.trim().strip_prefix("certificate-authority: ")).unwrap().to_string();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u, namespace: {namespace}}}\n\
         current-context: c\n"
    );
    let path = c.dir.join(format!("{file}.kubeconfig"));
    std::fs::write(&path, kubeconfig).unwrap();
    path
}
