//! Merging a service from an override file into the base, following the compose specification's
//! merge rules: scalars are replaced; mappings (`environment`, `labels`, `build.args`,
//! `depends_on`, `logging.options`) merge key by key; `command`, `entrypoint` and
//! `healthcheck.test` are replaced; `ports` and lists of strings are appended without duplicates;
//! `volumes`, `configs` and `secrets` are unique by container path (the override's mount wins);
//! `networks` merge by name.
use super::{model::Service, parse::Draft};

pub fn merge(base: &mut Draft, over: Draft) {
    base.env.extend(over.env);
    base.warnings.extend(over.warnings);
    replace(&mut base.limits.memory, over.limits.memory);
    replace(&mut base.limits.cpus, over.limits.cpus);
    let (b, o) = (&mut base.svc, over.svc);
    replace(&mut b.pull_policy, o.pull_policy);
    replace(&mut b.mem_reservation, o.mem_reservation);
    replace(&mut b.pids_limit, o.pids_limit);
    b.networks.extend(o.networks);
    append_unique(&mut b.profiles, o.profiles);
    for (list, more) in [(&mut b.configs, o.configs), (&mut b.secrets, o.secrets)] {
        for m in more {
            list.retain(|e| e.target != m.target);
            list.push(m);
        }
    }
    replace(&mut b.image, o.image);
    replace(&mut b.restart, o.restart);
    replace(&mut b.command, o.command);
    replace(&mut b.entrypoint, o.entrypoint);
    replace(&mut b.init, o.init);
    replace(&mut b.user, o.user);
    replace(&mut b.working_dir, o.working_dir);
    replace(&mut b.stdin_open, o.stdin_open);
    replace(&mut b.tty, o.tty);
    replace(&mut b.network_mode, o.network_mode);
    replace(&mut b.mem_limit, o.mem_limit);
    replace(&mut b.cpus, o.cpus);
    replace(&mut b.hostname, o.hostname);
    replace(&mut b.stop_signal, o.stop_signal);
    replace(&mut b.stop_grace_period, o.stop_grace_period);
    b.labels.extend(o.labels);
    b.depends_on.extend(o.depends_on);
    merge_build(b, o.build);
    merge_healthcheck(b, o.healthcheck);
    merge_logging(b, o.logging);
    for f in o.env_files {
        b.env_files.retain(|e| e.path != f.path);
        b.env_files.push(f);
    }
    for m in o.volumes {
        match b.volumes.iter_mut().find(|v| v.target == m.target) {
            Some(slot) => *slot = m,
            None => b.volumes.push(m),
        }
    }
    append_unique(&mut b.ports, o.ports);
    append_unique(&mut b.cap_add, o.cap_add);
    append_unique(&mut b.cap_drop, o.cap_drop);
    append_unique(&mut b.security_opt, o.security_opt);
    append_unique(&mut b.group_add, o.group_add);
    for (host, addr) in o.extra_hosts {
        b.extra_hosts.retain(|(h, a)| !(h == &host && a == &addr));
        b.extra_hosts.push((host, addr));
    }
}

fn replace<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

fn append_unique<T: PartialEq>(list: &mut Vec<T>, more: Vec<T>) {
    for item in more {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

fn merge_build(b: &mut Service, over: Option<super::model::Build>) {
    let Some(o) = over else { return };
    match &mut b.build {
        None => b.build = Some(o),
        Some(base) => {
            if !o.context.as_os_str().is_empty() {
                base.context = o.context;
            }
            replace(&mut base.dockerfile, o.dockerfile);
            replace(&mut base.target, o.target);
            base.args.extend(o.args);
        }
    }
}

fn merge_healthcheck(b: &mut Service, over: Option<super::model::Healthcheck>) {
    let Some(o) = over else { return };
    match &mut b.healthcheck {
        None => b.healthcheck = Some(o),
        Some(base) => {
            replace(&mut base.test, o.test);
            replace(&mut base.interval, o.interval);
            replace(&mut base.timeout, o.timeout);
            replace(&mut base.start_period, o.start_period);
            replace(&mut base.retries, o.retries);
            base.disable |= o.disable;
        }
    }
}

fn merge_logging(b: &mut Service, over: Option<super::model::Logging>) {
    let Some(o) = over else { return };
    match &mut b.logging {
        // A different driver makes the base's options meaningless: replace everything.
        Some(base) if o.driver.is_none() || o.driver == base.driver => {
            base.options.extend(o.options);
        }
        _ => b.logging = Some(o),
    }
}
