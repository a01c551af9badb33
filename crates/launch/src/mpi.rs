//! MPI jobs as MPI Operator v2beta1 runs them: workers get `K_MPI_JOB_ROLE=worker`; the
//! launcher gets `K_MPI_JOB_ROLE=launcher`, the implementation's variables (Open MPI:
//! `OMPI_MCA_orte_keep_fqdn_hostnames`, `OMPI_MCA_orte_default_hostfile`,
//! `OMPI_MCA_plm_rsh_args`, `OMPI_MCA_orte_set_default_slots`; Intel: `I_MPI_HYDRA_HOST_FILE`,
//! `I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS`, `I_MPI_PERHOST`; MPICH: `HYDRA_HOST_FILE`,
//! `HYDRA_LAUNCH_EXTRA_ARGS`), then `NVIDIA_VISIBLE_DEVICES` and `NVIDIA_DRIVER_CAPABILITIES`
//! emptied, plus the files `hostfile` (one line per worker: `host slots=N` for Open MPI,
//! `host:N` for Intel and MPICH) and `discover_hosts.sh`.
//!
//! With an rsh agent, the remote daemons are started through it instead of ssh, with the
//! variables Training Operator v1's MPIJob used for its `kubexec.sh`: Open MPI
//! `OMPI_MCA_plm_rsh_agent`, Intel `I_MPI_HYDRA_BOOTSTRAP=rsh` and
//! `I_MPI_HYDRA_BOOTSTRAP_EXEC`, MPICH `HYDRA_LAUNCHER=rsh` and `HYDRA_LAUNCHER_EXEC`.

use mofang_job::{MpiImplementation, MpiOptions};

use crate::{AddressBook, Env, Error, FileToWrite, LaunchContext, LaunchSpec, Network, Result};

/// The hostfile's name in the files directory.
pub const HOSTFILE: &str = "hostfile";
/// The host-discovery script's name in the files directory (Horovod elastic).
pub const DISCOVER_HOSTS_FILE: &str = "discover_hosts.sh";

/// MPI Operator's ssh options for the remote shell.
const RSH_ARGS: &str = "-o ConnectionAttempts=10";

pub(crate) fn launch(
    spec: &LaunchSpec,
    options: &MpiOptions,
    book: &AddressBook,
    context: &LaunchContext,
    role: &str,
) -> Result<(Env, Vec<FileToWrite>)> {
    let mut env = Env::new();
    if role != "launcher" {
        env.set("K_MPI_JOB_ROLE", "worker");
        return Ok((env, Vec::new()));
    }
    if options.slots_per_worker == 0 {
        return Err(Error::Invalid("slots_per_worker must be at least 1".into()));
    }
    let workers = spec
        .role("worker")
        .ok_or_else(|| Error::Invalid("an mpi job needs a worker role".into()))?
        .replicas;
    let hosts = (0..workers)
        .map(|i| hostfile_host(book, i))
        .collect::<Result<Vec<_>>>()?;
    let dir = context.files_dir.trim_end_matches('/');
    let hostfile_path = format!("{dir}/{HOSTFILE}");
    let slots = options.slots_per_worker.to_string();

    env.set("K_MPI_JOB_ROLE", "launcher");
    let agent = context.rsh_agent.as_deref();
    match options.implementation {
        MpiImplementation::OpenMpi => {
            env.set("OMPI_MCA_orte_keep_fqdn_hostnames", "true");
            env.set("OMPI_MCA_orte_default_hostfile", hostfile_path.clone());
            env.set("OMPI_MCA_plm_rsh_args", RSH_ARGS);
            env.set("OMPI_MCA_orte_set_default_slots", slots.clone());
            if let Some(agent) = agent {
                env.set("OMPI_MCA_plm_rsh_agent", agent);
            }
        }
        MpiImplementation::Intel => {
            env.set("I_MPI_HYDRA_HOST_FILE", hostfile_path.clone());
            env.set("I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS", RSH_ARGS);
            env.set("I_MPI_PERHOST", slots.clone());
            if let Some(agent) = agent {
                env.set("I_MPI_HYDRA_BOOTSTRAP", "rsh");
                env.set("I_MPI_HYDRA_BOOTSTRAP_EXEC", agent);
            }
        }
        MpiImplementation::Mpich => {
            env.set("HYDRA_HOST_FILE", hostfile_path.clone());
            env.set("HYDRA_LAUNCH_EXTRA_ARGS", RSH_ARGS);
            if let Some(agent) = agent {
                env.set("HYDRA_LAUNCHER", "rsh");
                env.set("HYDRA_LAUNCHER_EXEC", agent);
            }
        }
    }
    env.set("NVIDIA_VISIBLE_DEVICES", "");
    env.set("NVIDIA_DRIVER_CAPABILITIES", "");

    let mut hostfile = String::new();
    for host in &hosts {
        match options.implementation {
            MpiImplementation::OpenMpi => hostfile.push_str(&format!("{host} slots={slots}\n")),
            MpiImplementation::Intel | MpiImplementation::Mpich => {
                hostfile.push_str(&format!("{host}:{slots}\n"))
            }
        }
    }
    let files = vec![
        FileToWrite {
            path: hostfile_path,
            contents: hostfile,
            mode: 0o444,
        },
        FileToWrite {
            path: format!("{dir}/{DISCOVER_HOSTS_FILE}"),
            contents: discover_hosts(book, &(0..workers).collect::<Vec<_>>())?,
            mode: 0o555,
        },
    ];
    Ok((env, files))
}

/// The name worker `index` has in the hostfile: its DNS name on Kubernetes, its replica name
/// (`<job>-worker-<i>`) on the local network, where the rsh agent maps it to the replica.
fn hostfile_host(book: &AddressBook, index: u32) -> Result<String> {
    let a = book.get("worker", index)?;
    Ok(match book.network() {
        Network::Kubernetes => a.host.clone(),
        Network::Local => a.name.clone(),
    })
}

/// `discover_hosts.sh` for the workers that are running (indices), as MPI Operator v2 writes
/// it: `#!/bin/sh`, then `echo <host>` per worker, ordered by the worker's replica name. The
/// plan's copy lists every worker (the launcher starts once all run); call this to rewrite it
/// when the set changes.
pub fn discover_hosts(book: &AddressBook, running_workers: &[u32]) -> Result<String> {
    let mut named = running_workers
        .iter()
        .map(|&i| {
            let name = book.get("worker", i)?.name.clone();
            Ok((name, hostfile_host(book, i)?))
        })
        .collect::<Result<Vec<_>>>()?;
    named.sort();
    named.dedup();
    Ok(script(named.into_iter().map(|(_, host)| host).collect()))
}

fn script(hosts: Vec<String>) -> String {
    let mut s = String::from("#!/bin/sh\n");
    for h in hosts {
        s.push_str(&format!("echo {h}\n"));
    }
    s
}
