//! Where each replica is reachable: the address book, local or Kubernetes.

use std::collections::BTreeMap;

use mofang_job::PytorchFlavour;

use crate::{Error, Framework, Result, Role, pytorch};

/// TFJob's default port (`tfjob-port`).
pub const TENSORFLOW_DEFAULT_PORT: u16 = 2222;
/// PyTorchJob's default port (`pytorchjob-port`).
pub const PYTORCH_DEFAULT_PORT: u16 = 23456;
/// Trainer v2's torch runtime port (`PET_MASTER_PORT`).
pub const TRAINER_TORCH_PORT: u16 = 29500;
/// Where MPI Operator's workers run sshd. No variable names it; MPI and plain jobs' Kubernetes
/// books carry it because every address has a port.
pub const MPI_SSH_PORT: u16 = 22;

/// The network an address book describes; MPI's hostfile depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// One machine: every replica is `127.0.0.1` with its own port. Hostfiles name replicas
    /// (`<job>-worker-<i>`), for the rsh agent to find them.
    Local,
    /// Kubernetes: replicas are reached by DNS names of services; hostfiles list those names.
    Kubernetes,
}

/// One replica's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The replica's name: `<job>-<role>-<index>` (Trainer v2 naming: `<job>-node-0-<rank>`).
    /// MPI's hostfile lists it on the local network.
    pub name: String,
    /// What peers connect to: `127.0.0.1`, or a Kubernetes DNS name.
    pub host: String,
    pub port: u16,
}

/// How Kubernetes host names are formed (each is the convention of a Kubeflow controller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeNaming {
    /// One headless service per replica, fully qualified: `<job>-<role>-<i>.<ns>.svc[.<domain>]`
    /// (Training Operator v1's `TF_CONFIG`).
    ServicePerReplica,
    /// One headless service per replica, by its bare name: `<job>-<role>-<i>` (Training
    /// Operator v1's PyTorchJob `MASTER_ADDR` and `PET_RDZV_ENDPOINT`).
    ServiceName,
    /// Pods with hostname `<job>-<role>-<i>` under the job's headless service:
    /// `<job>-<role>-<i>.<job>.<ns>.svc[.<domain>]` (MPI Operator v2beta1, and the default).
    JobSubdomain,
    /// Trainer v2's JobSet pods, one `node` role in rank order: `<job>-node-0-<rank>.<job>`.
    TrainerV2,
}

/// A Kubernetes address book's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubernetes {
    /// The job's namespace (a DNS label).
    pub namespace: String,
    pub naming: KubeNaming,
    /// Appended after `svc` when set (Training Operator's `CUSTOM_CLUSTER_DOMAIN`, MPI
    /// Operator's cluster domain), e.g. `cluster.local`.
    pub cluster_domain: Option<String>,
    /// The port every replica listens on.
    pub port: u16,
}

impl Kubernetes {
    /// `JobSubdomain` naming (`<job>-<role>-<i>.<job>.<ns>.svc:<port>`), no cluster domain.
    pub fn new(namespace: &str, port: u16) -> Kubernetes {
        Kubernetes {
            namespace: namespace.to_string(),
            naming: KubeNaming::JobSubdomain,
            cluster_domain: None,
            port,
        }
    }

    /// The naming and port the Kubeflow controller of `framework` uses: TFJob
    /// `ServicePerReplica`:2222, PyTorchJob `ServiceName`:23456, Trainer v2 `TrainerV2`:29500,
    /// MPIJob and plain jobs `JobSubdomain`:22.
    pub fn kubeflow(namespace: &str, framework: &Framework) -> Kubernetes {
        let (naming, port) = match framework {
            Framework::Tensorflow(_) => (KubeNaming::ServicePerReplica, TENSORFLOW_DEFAULT_PORT),
            Framework::Pytorch(o) if o.flavour == PytorchFlavour::TrainerV2 => {
                (KubeNaming::TrainerV2, TRAINER_TORCH_PORT)
            }
            Framework::Pytorch(_) => (KubeNaming::ServiceName, PYTORCH_DEFAULT_PORT),
            Framework::Mpi(_) | Framework::Plain => (KubeNaming::JobSubdomain, MPI_SSH_PORT),
        };
        Kubernetes {
            namespace: namespace.to_string(),
            naming,
            cluster_domain: None,
            port,
        }
    }
}

/// `(role, index) → address` for every replica of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressBook {
    network: Network,
    entries: BTreeMap<(String, u32), Address>,
}

impl AddressBook {
    /// One machine: every replica at `127.0.0.1` on the port `port(role, index)` gives; ports
    /// must be distinct and not 0.
    pub fn local(
        job: &str,
        roles: &[Role],
        mut port: impl FnMut(&str, u32) -> Option<u16>,
    ) -> Result<AddressBook> {
        check_dns_label("job name", job)?;
        let mut entries = BTreeMap::new();
        let mut owners: BTreeMap<u16, (String, u32)> = BTreeMap::new();
        for role in roles {
            check_dns_label("role", &role.name)?;
            for index in 0..role.replicas {
                let Some(p) = port(&role.name, index) else {
                    return Err(Error::NoAddress {
                        role: role.name.clone(),
                        index,
                    });
                };
                if p == 0 {
                    return Err(Error::Invalid(format!(
                        "{} {index} has port 0; give every replica a real port",
                        role.name
                    )));
                }
                if let Some((r, i)) = owners.insert(p, (role.name.clone(), index)) {
                    return Err(Error::Invalid(format!(
                        "port {p} is given to both {r} {i} and {} {index}; local replicas need \
                         distinct ports",
                        role.name
                    )));
                }
                entries.insert(
                    (role.name.clone(), index),
                    Address {
                        name: replica_name(job, &role.name, index),
                        host: "127.0.0.1".to_string(),
                        port: p,
                    },
                );
            }
        }
        Ok(AddressBook {
            network: Network::Local,
            entries,
        })
    }

    /// Kubernetes: every replica by the DNS name `cluster.naming` gives, on `cluster.port`.
    pub fn kubernetes(job: &str, roles: &[Role], cluster: &Kubernetes) -> Result<AddressBook> {
        check_dns_label("job name", job)?;
        check_dns_label("namespace", &cluster.namespace)?;
        if let Some(domain) = &cluster.cluster_domain
            && !is_dns_subdomain(domain)
        {
            return Err(Error::Invalid(format!(
                "cluster domain {domain:?} is not a DNS name (lowercase letters, digits, '-', '.')"
            )));
        }
        if cluster.port == 0 {
            return Err(Error::Invalid("the Kubernetes port must not be 0".into()));
        }
        let domain = match &cluster.cluster_domain {
            Some(d) => format!(".{d}"),
            None => String::new(),
        };
        let ns = &cluster.namespace;
        let mut entries = BTreeMap::new();
        for role in roles {
            check_dns_label("role", &role.name)?;
            for index in 0..role.replicas {
                let (name, host) = match cluster.naming {
                    KubeNaming::ServicePerReplica => {
                        let name = replica_name(job, &role.name, index);
                        let host = format!("{name}.{ns}.svc{domain}");
                        (name, host)
                    }
                    KubeNaming::ServiceName => {
                        let name = replica_name(job, &role.name, index);
                        (name.clone(), name)
                    }
                    KubeNaming::JobSubdomain => {
                        let name = replica_name(job, &role.name, index);
                        let host = format!("{name}.{job}.{ns}.svc{domain}");
                        (name, host)
                    }
                    KubeNaming::TrainerV2 => {
                        let rank =
                            pytorch::node_rank(roles, &role.name, index).ok_or_else(|| {
                                Error::Invalid(format!("no node rank for {} {index}", role.name))
                            })?;
                        let name = format!("{job}-node-0-{rank}");
                        let host = format!("{name}.{job}");
                        (name, host)
                    }
                };
                entries.insert(
                    (role.name.clone(), index),
                    Address {
                        name,
                        host,
                        port: cluster.port,
                    },
                );
            }
        }
        Ok(AddressBook {
            network: Network::Kubernetes,
            entries,
        })
    }

    pub fn network(&self) -> Network {
        self.network
    }

    /// The address of replica `index` of `role`.
    pub fn get(&self, role: &str, index: u32) -> Result<&Address> {
        self.entries
            .get(&(role.to_string(), index))
            .ok_or_else(|| Error::NoAddress {
                role: role.to_string(),
                index,
            })
    }

    /// `((role, index), address)` by role name, then index.
    pub fn iter(&self) -> impl Iterator<Item = ((&str, u32), &Address)> {
        self.entries
            .iter()
            .map(|((role, index), a)| ((role.as_str(), *index), a))
    }

    /// `host:port` of a replica.
    pub(crate) fn endpoint(&self, role: &str, index: u32) -> Result<String> {
        let a = self.get(role, index)?;
        Ok(format!("{}:{}", a.host, a.port))
    }
}

/// Kubeflow's replica name: `<job>-<role>-<index>`.
fn replica_name(job: &str, role: &str, index: u32) -> String {
    format!("{job}-{role}-{index}")
}

fn check_dns_label(what: &str, value: &str) -> Result<()> {
    let b = value.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {value:?} is not a DNS label (1-63 lowercase letters, digits and '-')"
        )))
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|label| check_dns_label("", label).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<Role> {
        vec![Role::new("worker", 2), Role::new("master", 1)]
    }

    #[test]
    fn local_books_need_a_distinct_real_port_per_replica() {
        let book = AddressBook::local("j", &roles(), |role, i| {
            Some(if role == "master" {
                7000
            } else {
                7001 + i as u16
            })
        })
        .expect("valid");
        let a = book.get("worker", 1).expect("present");
        assert_eq!(
            (a.name.as_str(), a.host.as_str(), a.port),
            ("j-worker-1", "127.0.0.1", 7002)
        );
        assert_eq!(book.network(), Network::Local);
        assert!(matches!(
            book.get("worker", 2),
            Err(Error::NoAddress { .. })
        ));

        let same = AddressBook::local("j", &roles(), |_, _| Some(7000));
        assert!(matches!(same, Err(Error::Invalid(m)) if m.contains("port 7000")));
        let zero = AddressBook::local("j", &roles(), |_, _| Some(0));
        assert!(matches!(zero, Err(Error::Invalid(m)) if m.contains("port 0")));
        let missing = AddressBook::local("j", &roles(), |role, _| (role == "master").then_some(1));
        assert_eq!(
            missing,
            Err(Error::NoAddress {
                role: "worker".into(),
                index: 0
            })
        );
    }

    #[test]
    fn kubernetes_names_follow_each_convention() {
        let mut k = Kubernetes {
            namespace: "ns".into(),
            naming: KubeNaming::ServicePerReplica,
            cluster_domain: Some("cluster.local".into()),
            port: 1,
        };
        let host = |k: &Kubernetes, role: &str, i: u32| {
            AddressBook::kubernetes("j", &roles(), k)
                .expect("valid")
                .get(role, i)
                .expect("present")
                .host
                .clone()
        };
        assert_eq!(host(&k, "worker", 1), "j-worker-1.ns.svc.cluster.local");
        k.naming = KubeNaming::JobSubdomain;
        assert_eq!(host(&k, "worker", 1), "j-worker-1.j.ns.svc.cluster.local");
        k.naming = KubeNaming::ServiceName;
        assert_eq!(host(&k, "worker", 1), "j-worker-1");
        k.naming = KubeNaming::TrainerV2;
        assert_eq!(host(&k, "master", 0), "j-node-0-0.j");
        assert_eq!(host(&k, "worker", 1), "j-node-0-2.j");
        k.namespace = "Bad".into();
        assert!(AddressBook::kubernetes("j", &roles(), &k).is_err());
    }
}
