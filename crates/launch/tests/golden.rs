//! Golden launch environments. Where a test is named after a Kubeflow test, its job and its
//! expected values are those of that test (Training Operator v1.9 `pkg/controller.v1/...`,
//! MPI Operator v2beta1 `pkg/controller/mpi_job_controller_test.go`, Trainer v2
//! `pkg/runtime/framework/plugins/torch/torch_test.go`), written out here as literals. The
//! representative jobs' values follow the same rules, on both address books.

use mofang_job::{
    ElasticOptions, JobSpec, MpiImplementation, MpiOptions, NprocPerNode, PytorchFlavour,
    PytorchOptions, RdzvBackend, Resources, SuccessPolicy, TensorflowOptions,
};
use mofang_launch::{
    AddressBook, Error, FileToWrite, Framework, KubeNaming, Kubernetes, LaunchContext, LaunchPlan,
    LaunchSpec, Network, PYTORCH_DEFAULT_PORT, Role, StartPolicy, SuccessRule,
    TENSORFLOW_DEFAULT_PORT, TRAINER_TORCH_PORT, discover_hosts, plan,
};

fn spec(job: &str, framework: Framework, roles: &[(&str, u32)]) -> LaunchSpec {
    LaunchSpec {
        job: job.into(),
        framework,
        roles: roles.iter().map(|(r, n)| Role::new(r, *n)).collect(),
    }
}

fn kube(namespace: &str, naming: KubeNaming, domain: Option<&str>, port: u16) -> Kubernetes {
    Kubernetes {
        namespace: namespace.into(),
        naming,
        cluster_domain: domain.map(String::from),
        port,
    }
}

fn ssh() -> LaunchContext {
    LaunchContext {
        files_dir: "/etc/mpi".into(),
        rsh_agent: None,
    }
}

fn plan_on_kube(s: &LaunchSpec, k: &Kubernetes) -> LaunchPlan {
    let book = AddressBook::kubernetes(&s.job, &s.roles, k).expect("a valid address book");
    plan(s, &book, &ssh()).expect("a valid plan")
}

/// A local book whose ports are 5000, 5001, ... in role order, then index.
fn local_book(s: &LaunchSpec) -> AddressBook {
    let mut next = 5000u16;
    let mut ports = Vec::new();
    for r in &s.roles {
        for i in 0..r.replicas {
            ports.push((r.name.clone(), i, next));
            next += 1;
        }
    }
    AddressBook::local(&s.job, &s.roles, |role, i| {
        ports
            .iter()
            .find(|(r, j, _)| r == role && *j == i)
            .map(|(_, _, p)| *p)
    })
    .expect("a valid local book")
}

fn env(plan: &LaunchPlan, role: &str, index: u32) -> Vec<(String, String)> {
    plan.replica(role, index)
        .unwrap_or_else(|| panic!("no replica {role} {index} in {plan:?}"))
        .env
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn var(plan: &LaunchPlan, role: &str, index: u32, name: &str) -> Option<String> {
    plan.replica(role, index)
        .and_then(|r| r.env.get(name))
        .map(String::from)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn tf(roles: &[(&str, u32)]) -> LaunchSpec {
    spec(
        "test-tfjob",
        Framework::Tensorflow(TensorflowOptions::default()),
        roles,
    )
}

// ---------------------------------------------------------------- tensorflow

/// Training Operator v1 `tensorflow/pod_test.go` "should generate desired cluster spec".
#[test]
fn tensorflow_cluster_spec_matches_training_operator_v1() {
    let single = tf(&[("worker", 1)]);
    for domain in [None, Some("tf.training.com")] {
        let p = plan_on_kube(
            &single,
            &kube(
                "ns0",
                KubeNaming::ServicePerReplica,
                domain,
                TENSORFLOW_DEFAULT_PORT,
            ),
        );
        assert!(env(&p, "worker", 0).is_empty(), "one replica: no TF_CONFIG");
    }

    let p = plan_on_kube(
        &tf(&[("worker", 1), ("ps", 1)]),
        &kube(
            "ns2",
            KubeNaming::ServicePerReplica,
            Some("tf.training.org"),
            2222,
        ),
    );
    assert_eq!(
        var(&p, "worker", 0, "TF_CONFIG").as_deref(),
        Some(
            r#"{"cluster":{"ps":["test-tfjob-ps-0.ns2.svc.tf.training.org:2222"],"worker":["test-tfjob-worker-0.ns2.svc.tf.training.org:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}"#
        )
    );

    let with_evaluator = tf(&[("worker", 1), ("ps", 1), ("evaluator", 1)]);
    let p = plan_on_kube(
        &with_evaluator,
        &kube(
            "ns3",
            KubeNaming::ServicePerReplica,
            Some("tf.training.io"),
            2222,
        ),
    );
    assert_eq!(
        var(&p, "worker", 0, "TF_CONFIG").as_deref(),
        Some(
            r#"{"cluster":{"evaluator":["test-tfjob-evaluator-0.ns3.svc.tf.training.io:2222"],"ps":["test-tfjob-ps-0.ns3.svc.tf.training.io:2222"],"worker":["test-tfjob-worker-0.ns3.svc.tf.training.io:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}"#
        )
    );
    let p = plan_on_kube(
        &with_evaluator,
        &kube("ns3", KubeNaming::ServicePerReplica, None, 2222),
    );
    assert_eq!(
        var(&p, "worker", 0, "TF_CONFIG").as_deref(),
        Some(
            r#"{"cluster":{"evaluator":["test-tfjob-evaluator-0.ns3.svc:2222"],"ps":["test-tfjob-ps-0.ns3.svc:2222"],"worker":["test-tfjob-worker-0.ns3.svc:2222"]},"task":{"type":"worker","index":0},"environment":"cloud"}"#
        )
    );
}

/// Training Operator v1 `tensorflow/pod_test.go` "Test IsDistributed": only a job of exactly
/// one replica is local.
#[test]
fn tensorflow_is_distributed_unless_it_has_one_replica() {
    let k = kube("default", KubeNaming::ServicePerReplica, None, 2222);
    for (roles, distributed) in [
        (vec![("worker", 1)], false),
        (vec![("worker", 1), ("ps", 1)], true),
        (vec![("chief", 1), ("worker", 1)], true),
        (vec![("chief", 1)], false),
    ] {
        let p = plan_on_kube(&tf(&roles), &k);
        let first = &p.replicas[0];
        assert_eq!(
            first.env.get("TF_CONFIG").is_some(),
            distributed,
            "{roles:?}"
        );
    }
}

/// The representative job: 1 chief, 2 workers, 1 ps, 1 evaluator.
#[test]
fn tensorflow_chief_workers_ps_and_evaluator_on_both_books() {
    let s = spec(
        "mnist",
        Framework::Tensorflow(TensorflowOptions::default()),
        &[("chief", 1), ("worker", 2), ("ps", 1), ("evaluator", 1)],
    );
    let p = plan_on_kube(&s, &Kubernetes::kubeflow("team-a", &s.framework));
    let cluster = r#"{"cluster":{"chief":["mnist-chief-0.team-a.svc:2222"],"evaluator":["mnist-evaluator-0.team-a.svc:2222"],"ps":["mnist-ps-0.team-a.svc:2222"],"worker":["mnist-worker-0.team-a.svc:2222","mnist-worker-1.team-a.svc:2222"]}"#;
    for (role, index) in [
        ("chief", 0),
        ("worker", 0),
        ("worker", 1),
        ("ps", 0),
        ("evaluator", 0),
    ] {
        assert_eq!(
            env(&p, role, index),
            pairs(&[(
                "TF_CONFIG",
                &format!(
                    r#"{cluster},"task":{{"type":"{role}","index":{index}}},"environment":"cloud"}}"#
                )
            )]),
        );
    }
    assert_eq!(p.replicas.len(), 5);
    assert!(p.replicas.iter().all(|r| r.files.is_empty()));
    assert_eq!(
        p.completion.success,
        SuccessRule::Every(vec![("chief".into(), 1)])
    );
    assert_eq!(p.completion.servers, ["ps"]);
    assert_eq!(p.completion.start, StartPolicy::Together);

    let local = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert_eq!(
        var(&local, "worker", 1, "TF_CONFIG").as_deref(),
        Some(
            r#"{"cluster":{"chief":["127.0.0.1:5000"],"evaluator":["127.0.0.1:5004"],"ps":["127.0.0.1:5003"],"worker":["127.0.0.1:5001","127.0.0.1:5002"]},"task":{"type":"worker","index":1},"environment":"cloud"}"#
        )
    );
}

#[test]
fn tensorflow_success_policy_all_workers_is_the_rule_without_a_chief() {
    let s = spec(
        "t",
        Framework::Tensorflow(TensorflowOptions {
            success_policy: SuccessPolicy::AllWorkers,
        }),
        &[("worker", 3), ("ps", 2)],
    );
    let p = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert_eq!(
        p.completion.success,
        SuccessRule::Every(vec![("worker".into(), 3)])
    );
    let d = spec(
        "t",
        Framework::Tensorflow(TensorflowOptions::default()),
        &[("worker", 3), ("ps", 2)],
    );
    let p = plan(&d, &local_book(&d), &ssh()).expect("plan");
    assert_eq!(
        p.completion.success,
        SuccessRule::Replica {
            role: "worker".into(),
            index: 0
        }
    );
}

// ---------------------------------------------------------------- pytorch

fn pytorch(options: PytorchOptions, roles: &[(&str, u32)]) -> LaunchSpec {
    spec("test-job", Framework::Pytorch(options), roles)
}

/// Training Operator v1 `pytorch/pytorchjob_controller_test.go` "Should get the corresponding
/// resources successfully" (master + 2 workers, nprocPerNode defaulted to auto): the master
/// has MASTER_PORT = the service port, MASTER_ADDR = the master service's name,
/// PET_NPROC_PER_NODE = auto.
#[test]
fn pytorch_master_variables_match_training_operator_v1() {
    let s = pytorch(PytorchOptions::default(), &[("master", 1), ("worker", 2)]);
    let p = plan_on_kube(&s, &kube("ns", KubeNaming::ServiceName, None, 23456));
    let master = env(&p, "master", 0);
    for want in [
        ("MASTER_PORT", "23456"),
        ("MASTER_ADDR", "test-job-master-0"),
        ("PET_NPROC_PER_NODE", "auto"),
    ] {
        assert!(
            master.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {master:?}"
        );
    }
}

/// Training Operator v1 `pytorch/elastic_test.go` and the controller's elastic test
/// (1 worker; min 1, max 3, maxRestarts 3, c10d).
#[test]
fn pytorch_elastic_variables_match_training_operator_v1() {
    let s = pytorch(
        PytorchOptions {
            elastic: Some(ElasticOptions {
                min: Some(1),
                max: Some(3),
                max_restarts: Some(3),
                rdzv_backend: RdzvBackend::C10d,
            }),
            ..PytorchOptions::default()
        },
        &[("worker", 1)],
    );
    let p = plan_on_kube(&s, &kube("ns", KubeNaming::ServiceName, None, 23456));
    let worker = env(&p, "worker", 0);
    for want in [
        ("PET_RDZV_BACKEND", "c10d"),
        ("PET_NNODES", "1:3"),
        ("PET_RDZV_ENDPOINT", "test-job-worker-0:23456"),
        ("PET_MAX_RESTARTS", "3"),
    ] {
        assert!(
            worker.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {worker:?}"
        );
    }
    assert_eq!(
        var(&p, "worker", 0, "MASTER_ADDR"),
        None,
        "no master, no MASTER_ADDR"
    );
    assert_eq!(var(&p, "worker", 0, "RANK"), None);
}

/// The representative job: 1 master + 3 workers, nproc 2, elastic 1:4, in Kubeflow's order.
#[test]
fn pytorch_master_and_workers_elastic_on_both_books() {
    let s = spec(
        "ddp",
        Framework::Pytorch(PytorchOptions {
            nproc_per_node: NprocPerNode::Count(2),
            elastic: Some(ElasticOptions {
                min: Some(1),
                max: Some(4),
                max_restarts: Some(3),
                rdzv_backend: RdzvBackend::C10d,
            }),
            flavour: PytorchFlavour::TrainingOperatorV1,
        }),
        &[("master", 1), ("worker", 3)],
    );
    let k = Kubernetes::kubeflow("team-a", &s.framework);
    assert_eq!(
        (k.naming, k.port),
        (KubeNaming::ServiceName, PYTORCH_DEFAULT_PORT)
    );
    let p = plan_on_kube(&s, &k);
    let expected = |rank: &str| {
        pairs(&[
            ("PYTHONUNBUFFERED", "1"),
            ("MASTER_PORT", "23456"),
            ("PET_MASTER_PORT", "23456"),
            ("MASTER_ADDR", "ddp-master-0"),
            ("PET_MASTER_ADDR", "ddp-master-0"),
            ("WORLD_SIZE", "8"),
            ("RANK", rank),
            ("PET_NODE_RANK", rank),
            ("PET_NPROC_PER_NODE", "2"),
            ("PET_RDZV_ENDPOINT", "ddp-worker-0:23456"),
            ("PET_RDZV_BACKEND", "c10d"),
            ("PET_NNODES", "1:4"),
            ("PET_MAX_RESTARTS", "3"),
        ])
    };
    assert_eq!(env(&p, "master", 0), expected("0"));
    assert_eq!(env(&p, "worker", 0), expected("1"));
    assert_eq!(env(&p, "worker", 2), expected("3"));
    assert_eq!(
        p.completion.success,
        SuccessRule::Every(vec![("master".into(), 1)])
    );

    let local = plan(&s, &local_book(&s), &ssh()).expect("plan");
    let w = env(&local, "worker", 1);
    for want in [
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "5000"),
        ("PET_MASTER_ADDR", "127.0.0.1"),
        ("PET_MASTER_PORT", "5000"),
        ("RANK", "2"),
        ("PET_RDZV_ENDPOINT", "127.0.0.1:5001"),
    ] {
        assert!(
            w.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} not in {w:?}"
        );
    }
    assert_eq!(w.len(), 13);
}

#[test]
fn pytorch_workers_only_get_nnodes_and_no_ranks() {
    let s = pytorch(PytorchOptions::default(), &[("worker", 2)]);
    let p = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert_eq!(
        env(&p, "worker", 1),
        pairs(&[
            ("PYTHONUNBUFFERED", "1"),
            ("PET_NPROC_PER_NODE", "auto"),
            ("PET_NNODES", "2"),
        ])
    );
    assert_eq!(
        p.completion.success,
        SuccessRule::Every(vec![("worker".into(), 2)])
    );
}

/// Trainer v2 `torch_test.go` and `trainingruntime_test.go`: PET_* only, rank 0's address,
/// port 29500; `auto` without GPUs is the replica's CPUs (no CPUs asked: 1).
#[test]
fn trainer_v2_torch_variables_match_trainer() {
    let options = |nproc| PytorchOptions {
        nproc_per_node: nproc,
        flavour: PytorchFlavour::TrainerV2,
        ..PytorchOptions::default()
    };
    let s = pytorch(options(NprocPerNode::Count(3)), &[("worker", 30)]);
    let k = Kubernetes::kubeflow("default", &s.framework);
    assert_eq!(
        (k.naming, k.port),
        (KubeNaming::TrainerV2, TRAINER_TORCH_PORT)
    );
    let p = plan_on_kube(&s, &k);
    assert_eq!(
        env(&p, "worker", 7),
        pairs(&[
            ("PET_NNODES", "30"),
            ("PET_NPROC_PER_NODE", "3"),
            ("PET_NODE_RANK", "7"),
            ("PET_MASTER_ADDR", "test-job-node-0-0.test-job"),
            ("PET_MASTER_PORT", "29500"),
        ])
    );

    let mut cpu4 = pytorch(options(NprocPerNode::Auto), &[("worker", 1)]);
    cpu4.roles[0].resources = Resources {
        cpu: mofang_job::Millicores(4000),
        ..Resources::default()
    };
    let p = plan_on_kube(&cpu4, &k);
    assert_eq!(
        var(&p, "worker", 0, "PET_NPROC_PER_NODE").as_deref(),
        Some("4")
    );
    assert_eq!(var(&p, "worker", 0, "PET_NNODES").as_deref(), Some("1"));

    let mut gpu = cpu4.clone();
    gpu.roles[0].resources.gpu = 2;
    let p = plan_on_kube(&gpu, &k);
    assert_eq!(
        var(&p, "worker", 0, "PET_NPROC_PER_NODE").as_deref(),
        Some("auto")
    );

    // A master is rank 0 wherever the spec lists it; locally its own port is the master port.
    let s = pytorch(options(NprocPerNode::Auto), &[("worker", 2), ("master", 1)]);
    let p = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert_eq!(
        env(&p, "worker", 1),
        pairs(&[
            ("PET_NNODES", "3"),
            ("PET_NPROC_PER_NODE", "1"),
            ("PET_NODE_RANK", "2"),
            ("PET_MASTER_ADDR", "127.0.0.1"),
            ("PET_MASTER_PORT", "5002"),
        ])
    );
}

// ---------------------------------------------------------------- mpi

fn mpi(job: &str, slots: u32, implementation: MpiImplementation, workers: u32) -> LaunchSpec {
    spec(
        job,
        Framework::Mpi(MpiOptions {
            slots_per_worker: slots,
            implementation,
        }),
        &[("launcher", 1), ("worker", workers)],
    )
}

fn file<'a>(plan: &'a LaunchPlan, name: &str) -> &'a FileToWrite {
    let launcher = plan.replica("launcher", 0).expect("a launcher");
    launcher
        .files
        .iter()
        .find(|f| f.path.ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("no {name} in {:?}", launcher.files))
}

/// MPI Operator v2beta1 `TestNewConfigMap` (the cases without launcher-as-worker).
#[test]
fn mpi_hostfiles_match_mpi_operator() {
    use MpiImplementation::*;
    for (job, ns, domain, slots, implementation, workers, want) in [
        (
            "openmpi-without-slots",
            "tenant-a",
            None,
            1,
            OpenMpi,
            2,
            "openmpi-without-slots-worker-0.openmpi-without-slots.tenant-a.svc slots=1\nopenmpi-without-slots-worker-1.openmpi-without-slots.tenant-a.svc slots=1\n",
        ),
        (
            "openmpi-with-slots",
            "tenant-a",
            None,
            10,
            OpenMpi,
            1,
            "openmpi-with-slots-worker-0.openmpi-with-slots.tenant-a.svc slots=10\n",
        ),
        (
            "openmpi-with-slots",
            "tenant-a",
            Some("cluster.local"),
            1,
            OpenMpi,
            1,
            "openmpi-with-slots-worker-0.openmpi-with-slots.tenant-a.svc.cluster.local slots=1\n",
        ),
        (
            "intelmpi-with-slots",
            "project-x",
            None,
            10,
            Intel,
            1,
            "intelmpi-with-slots-worker-0.intelmpi-with-slots.project-x.svc:10\n",
        ),
        (
            "intelmpi-with-slots",
            "project-x",
            Some("cluster.local"),
            1,
            Intel,
            1,
            "intelmpi-with-slots-worker-0.intelmpi-with-slots.project-x.svc.cluster.local:1\n",
        ),
        (
            "mpich-with-slots",
            "project-x",
            None,
            10,
            Mpich,
            1,
            "mpich-with-slots-worker-0.mpich-with-slots.project-x.svc:10\n",
        ),
        (
            "mpich-with-slots",
            "project-x",
            Some("cluster.local"),
            1,
            Mpich,
            1,
            "mpich-with-slots-worker-0.mpich-with-slots.project-x.svc.cluster.local:1\n",
        ),
    ] {
        let s = mpi(job, slots, implementation, workers);
        let p = plan_on_kube(&s, &kube(ns, KubeNaming::JobSubdomain, domain, 22));
        let hostfile = file(&p, "hostfile");
        assert_eq!(hostfile.contents, want, "{job} {domain:?}");
        assert_eq!(
            (hostfile.path.as_str(), hostfile.mode),
            ("/etc/mpi/hostfile", 0o444)
        );
    }
}

/// MPI Operator v2beta1 `TestUpdateDiscoverHostsInConfigMap`: running workers by name.
#[test]
fn mpi_discover_hosts_matches_mpi_operator() {
    let s = mpi("test-job", 1, MpiImplementation::OpenMpi, 3);
    let book = AddressBook::kubernetes(
        &s.job,
        &s.roles,
        &kube("default", KubeNaming::JobSubdomain, None, 22),
    )
    .expect("book");
    assert_eq!(discover_hosts(&book, &[]).expect("script"), "#!/bin/sh\n");
    assert_eq!(
        discover_hosts(&book, &[1, 0]).expect("script"),
        "#!/bin/sh\necho test-job-worker-0.test-job.default.svc\necho test-job-worker-1.test-job.default.svc\n"
    );
    let p = plan(&s, &book, &ssh()).expect("plan");
    let script = file(&p, "discover_hosts.sh");
    assert_eq!(
        script.contents,
        "#!/bin/sh\necho test-job-worker-0.test-job.default.svc\necho test-job-worker-1.test-job.default.svc\necho test-job-worker-2.test-job.default.svc\n"
    );
    assert_eq!(script.mode, 0o555);
    assert!(matches!(
        discover_hosts(&book, &[3]),
        Err(Error::NoAddress { .. })
    ));
}

/// MPI Operator v2beta1 `TestNewLauncherAndWorker`: "defaults" (Open MPI, slots 1) and the
/// Intel case (slots 5).
#[test]
fn mpi_launcher_and_worker_variables_match_mpi_operator() {
    let k = Kubernetes::new("bar", 22);
    let p = plan_on_kube(&mpi("foo", 1, MpiImplementation::OpenMpi, 1), &k);
    assert_eq!(
        env(&p, "launcher", 0),
        pairs(&[
            ("K_MPI_JOB_ROLE", "launcher"),
            ("OMPI_MCA_orte_keep_fqdn_hostnames", "true"),
            ("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"),
            ("OMPI_MCA_plm_rsh_args", "-o ConnectionAttempts=10"),
            ("OMPI_MCA_orte_set_default_slots", "1"),
            ("NVIDIA_VISIBLE_DEVICES", ""),
            ("NVIDIA_DRIVER_CAPABILITIES", ""),
        ])
    );
    assert_eq!(env(&p, "worker", 0), pairs(&[("K_MPI_JOB_ROLE", "worker")]));
    assert!(p.replica("worker", 0).expect("worker").files.is_empty());

    let p = plan_on_kube(&mpi("bar", 5, MpiImplementation::Intel, 1), &k);
    assert_eq!(
        env(&p, "launcher", 0),
        pairs(&[
            ("K_MPI_JOB_ROLE", "launcher"),
            ("I_MPI_HYDRA_HOST_FILE", "/etc/mpi/hostfile"),
            (
                "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS",
                "-o ConnectionAttempts=10"
            ),
            ("I_MPI_PERHOST", "5"),
            ("NVIDIA_VISIBLE_DEVICES", ""),
            ("NVIDIA_DRIVER_CAPABILITIES", ""),
        ])
    );
}

/// The representative job: 1 launcher + 2 workers, 2 slots each, both hostfile forms, both
/// books, mofang's rsh agent.
#[test]
fn mpi_launcher_and_two_workers_on_both_books_with_an_agent() {
    let agent = LaunchContext {
        files_dir: "run/job-7/".into(),
        rsh_agent: Some("mofang-rsh".into()),
    };
    let open = mpi("allreduce", 2, MpiImplementation::OpenMpi, 2);
    let local = plan(&open, &local_book(&open), &agent).expect("plan");
    assert_eq!(
        file(&local, "hostfile").contents,
        "allreduce-worker-0 slots=2\nallreduce-worker-1 slots=2\n"
    );
    assert_eq!(file(&local, "hostfile").path, "run/job-7/hostfile");
    assert_eq!(
        env(&local, "launcher", 0),
        pairs(&[
            ("K_MPI_JOB_ROLE", "launcher"),
            ("OMPI_MCA_orte_keep_fqdn_hostnames", "true"),
            ("OMPI_MCA_orte_default_hostfile", "run/job-7/hostfile"),
            ("OMPI_MCA_plm_rsh_args", "-o ConnectionAttempts=10"),
            ("OMPI_MCA_orte_set_default_slots", "2"),
            ("OMPI_MCA_plm_rsh_agent", "mofang-rsh"),
            ("NVIDIA_VISIBLE_DEVICES", ""),
            ("NVIDIA_DRIVER_CAPABILITIES", ""),
        ])
    );
    assert_eq!(
        file(&local, "discover_hosts.sh").contents,
        "#!/bin/sh\necho allreduce-worker-0\necho allreduce-worker-1\n"
    );

    let k = Kubernetes::kubeflow("hpc", &open.framework);
    let book = AddressBook::kubernetes(&open.job, &open.roles, &k).expect("book");
    assert_eq!(book.network(), Network::Kubernetes);
    let on_kube = plan(&open, &book, &agent).expect("plan");
    assert_eq!(
        file(&on_kube, "hostfile").contents,
        "allreduce-worker-0.allreduce.hpc.svc slots=2\nallreduce-worker-1.allreduce.hpc.svc slots=2\n"
    );

    let intel = mpi("allreduce", 2, MpiImplementation::Intel, 2);
    let p = plan(&intel, &local_book(&intel), &agent).expect("plan");
    assert_eq!(
        file(&p, "hostfile").contents,
        "allreduce-worker-0:2\nallreduce-worker-1:2\n"
    );
    assert_eq!(
        var(&p, "launcher", 0, "I_MPI_HYDRA_BOOTSTRAP").as_deref(),
        Some("rsh")
    );
    assert_eq!(
        var(&p, "launcher", 0, "I_MPI_HYDRA_BOOTSTRAP_EXEC").as_deref(),
        Some("mofang-rsh")
    );
    let mpich = mpi("allreduce", 2, MpiImplementation::Mpich, 2);
    let p = plan(&mpich, &local_book(&mpich), &agent).expect("plan");
    assert_eq!(
        file(&p, "hostfile").contents,
        "allreduce-worker-0:2\nallreduce-worker-1:2\n"
    );
    assert_eq!(
        env(&p, "launcher", 0),
        pairs(&[
            ("K_MPI_JOB_ROLE", "launcher"),
            ("HYDRA_HOST_FILE", "run/job-7/hostfile"),
            ("HYDRA_LAUNCH_EXTRA_ARGS", "-o ConnectionAttempts=10"),
            ("HYDRA_LAUNCHER", "rsh"),
            ("HYDRA_LAUNCHER_EXEC", "mofang-rsh"),
            ("NVIDIA_VISIBLE_DEVICES", ""),
            ("NVIDIA_DRIVER_CAPABILITIES", ""),
        ])
    );

    assert_eq!(
        on_kube.completion.start,
        StartPolicy::WaitForWorkersReady {
            launcher: "launcher".into(),
            workers: "worker".into(),
            worker_replicas: 2
        }
    );
    assert_eq!(
        on_kube.completion.success,
        SuccessRule::Every(vec![("launcher".into(), 1)])
    );
}

// ---------------------------------------------------------------- from specs, errors

#[test]
fn a_parsed_spec_plans_with_its_defaults_and_plain_jobs_get_nothing() {
    let job = JobSpec::parse(
        "name: ddp\nkind: pytorch\ntasks:\n  - {role: master, command: [python, t.py]}\n  - {role: worker, replicas: 2, command: [python, t.py]}\n",
    )
    .expect("valid");
    let s = LaunchSpec::from_job(&job);
    assert_eq!(s.framework, Framework::Pytorch(PytorchOptions::default()));
    let p = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert_eq!(var(&p, "worker", 1, "RANK").as_deref(), Some("2"));
    assert_eq!(var(&p, "worker", 1, "WORLD_SIZE").as_deref(), Some("3"));

    let plain =
        JobSpec::parse("name: a\ntasks: [{role: w, replicas: 2, command: [x]}]\n").expect("valid");
    let s = LaunchSpec::from_job(&plain);
    let p = plan(&s, &local_book(&s), &ssh()).expect("plan");
    assert!(
        p.replicas
            .iter()
            .all(|r| r.env.is_empty() && r.files.is_empty())
    );
    assert_eq!(
        p.completion.success,
        SuccessRule::Every(vec![("w".into(), 2)])
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let s = spec(
        "j",
        Framework::Tensorflow(TensorflowOptions::default()),
        &[("launcher", 1)],
    );
    let k = kube("ns", KubeNaming::ServicePerReplica, None, 2222);
    let book = AddressBook::kubernetes(&s.job, &s.roles, &k).expect("book");
    assert!(matches!(plan(&s, &book, &ssh()), Err(Error::Invalid(m)) if m.contains("launcher")));

    let s = mpi("j", 1, MpiImplementation::OpenMpi, 2);
    let short = spec("j", Framework::Plain, &[("launcher", 1), ("worker", 1)]);
    let book = AddressBook::kubernetes(&short.job, &short.roles, &k).expect("book");
    assert_eq!(
        plan(&s, &book, &ssh()),
        Err(Error::NoAddress {
            role: "worker".into(),
            index: 1
        })
    );
    let no_launcher = spec("j", Framework::Mpi(MpiOptions::default()), &[("worker", 1)]);
    let book = AddressBook::kubernetes(&no_launcher.job, &no_launcher.roles, &k).expect("book");
    assert!(plan(&no_launcher, &book, &ssh()).is_err());
    let mut bad = k.clone();
    bad.cluster_domain = Some("Not A Domain".into());
    assert!(AddressBook::kubernetes("j", &[Role::new("worker", 1)], &bad).is_err());
}
