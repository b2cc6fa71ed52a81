//! Access control over real node processes: tenant isolation on every API, every
//! kind of bad token, roles and their limits, revocation, signing-key rotation,
//! the CLI's token commands, and no credential in any log.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use std::time::Duration;
use stratus_client::{
    Client, Credential, Error, GetOptions, PutOptions, Redundancy, Role, TokenSpec,
};
use stratus_proto::v1 as pb;
use stratus_tests::cli::Program;
use stratus_tests::grpc::{self, error_code};
use stratus_tests::poll::poll;
use stratus_tests::{bins, Cluster, ClusterOptions};
use tonic::{Code, Status};

const A: &str = "tena";
const B: &str = "tenb";
const DATA: &str = "data";
/// A revocation or role change must reach every node within this.
const PROPAGATION_BOUND: Duration = Duration::from_secs(5);

fn spec(tenant: &str, role: Role) -> TokenSpec {
    TokenSpec {
        tenant: tenant.into(),
        role,
        container: None,
        prefix: None,
        principal: None,
        start_offset_s: 0,
        valid_for: Duration::from_secs(3600),
    }
}

async fn token(op: &Client, spec: &TokenSpec) -> Result<String> {
    Ok(op.create_token(spec).await?.token.expose().to_string())
}

/// A token and its id.
async fn token_and_id(op: &Client, spec: &TokenSpec) -> Result<(String, String)> {
    let t = op.create_token(spec).await?;
    Ok((t.token.expose().to_string(), t.info.id))
}

/// The gRPC code and Stratus code of a result (`Ok` when it succeeded).
fn outcome<T>(r: Result<T, Status>) -> (Code, String) {
    match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(s) => (s.code(), error_code(&s).unwrap_or_default().to_string()),
    }
}

/// Every public API call on tenant `t` (container `c`, key `k`), made with
/// `credential` against `addr`: (name, code, stratus code).
async fn every_call(
    addr: &str,
    credential: &str,
    t: &str,
) -> Result<Vec<(&'static str, Code, String)>> {
    let (c, k) = (DATA, "k");
    let mut o = grpc::objects_as(addr, credential)?;
    let mut a = grpc::admin_as(addr, credential)?;
    let mut keys = grpc::keys_as(addr, credential)?;
    let mut acc = grpc::access_as(addr, credential)?;
    let key_req = || pb::KeyRequest { tenant: t.into() };
    let mut out = Vec::new();
    let put = grpc::put_messages(grpc::put_header(t, c, k), b"intruder", 1024);
    out.push((
        "put",
        outcome(o.put_object(futures::stream::iter(put)).await),
    ));
    out.push((
        "get",
        outcome(
            o.get_object(grpc::get_request(t, c, k, pb::Consistency::Strong))
                .await,
        ),
    ));
    out.push((
        "head",
        outcome(
            o.head_object(pb::HeadRequest {
                tenant: t.into(),
                container: c.into(),
                key: k.into(),
                consistency: 0,
            })
            .await,
        ),
    ));
    out.push((
        "list",
        outcome(
            o.list_objects(pb::ListRequest {
                tenant: t.into(),
                container: c.into(),
                ..Default::default()
            })
            .await,
        ),
    ));
    out.push((
        "delete",
        outcome(
            o.delete_object(pb::DeleteRequest {
                tenant: t.into(),
                container: c.into(),
                key: k.into(),
                if_match: None,
            })
            .await,
        ),
    ));
    out.push((
        "create container",
        outcome(
            a.create_container(pb::CreateContainerRequest {
                tenant: t.into(),
                name: "other".into(),
            })
            .await,
        ),
    ));
    out.push((
        "delete container",
        outcome(
            a.delete_container(pb::DeleteContainerRequest {
                tenant: t.into(),
                name: c.into(),
            })
            .await,
        ),
    ));
    out.push((
        "list containers",
        outcome(
            a.list_containers(pb::ListContainersRequest { tenant: t.into() })
                .await,
        ),
    ));
    out.push((
        "get tenant",
        outcome(a.get_tenant(pb::GetTenantRequest { name: t.into() }).await),
    ));
    out.push((
        "resolve tenant",
        outcome(
            a.resolve_tenant(pb::ResolveTenantRequest { tenant: t.into() })
                .await,
        ),
    ));
    out.push((
        "delete tenant",
        outcome(
            a.delete_tenant(pb::DeleteTenantRequest { name: t.into() })
                .await,
        ),
    ));
    out.push((
        "update tenant",
        outcome(
            a.update_tenant(pb::UpdateTenantRequest {
                name: t.into(),
                redundancy: pb::Redundancy::Zrs.into(),
                auto_failover_after_s: None,
            })
            .await,
        ),
    ));
    out.push((
        "failover",
        outcome(
            a.failover(pb::FailoverRequest {
                tenant: t.into(),
                planned: true,
            })
            .await,
        ),
    ));
    out.push(("show keys", outcome(keys.show_keys(key_req()).await)));
    out.push(("rotate key", outcome(keys.rotate_key(key_req()).await)));
    out.push(("revoke keys", outcome(keys.revoke_keys(key_req()).await)));
    out.push((
        "create token",
        outcome(
            acc.create_token(pb::CreateTokenRequest {
                tenant: t.into(),
                role: pb::Role::Owner.into(),
                valid_for_s: 60,
                ..Default::default()
            })
            .await,
        ),
    ));
    out.push((
        "grant role",
        outcome(
            acc.grant_role(pb::GrantRoleRequest {
                tenant: t.into(),
                assignment: Some(pb::RoleAssignment {
                    principal: "mallory".into(),
                    role: pb::Role::Owner.into(),
                    container: String::new(),
                }),
            })
            .await,
        ),
    ));
    out.push((
        "list roles",
        outcome(
            acc.list_roles(pb::ListRolesRequest { tenant: t.into() })
                .await,
        ),
    ));
    Ok(out
        .into_iter()
        .map(|(name, (code, s))| (name, code, s))
        .collect())
}

/// Fails unless every call was refused with `code` (and, when given, `stratus`).
fn all_refused(calls: &[(&str, Code, String)], code: Code, stratus: Option<&str>) -> Result<()> {
    let wrong: Vec<String> = calls
        .iter()
        .filter(|(_, c, s)| *c != code || stratus.is_some_and(|want| s != want))
        .map(|(n, c, s)| format!("{n}: {c:?}/{s}"))
        .collect();
    ensure!(
        wrong.is_empty(),
        "expected {code:?}/{stratus:?} for every call, got: {}",
        wrong.join(", ")
    );
    Ok(())
}

/// The code a raw get of `t/DATA/key` with `credential` gets at `addr`.
async fn get_code(addr: &str, credential: &str, t: &str, key: &str) -> Result<(Code, String)> {
    let mut o = grpc::objects_as(addr, credential)?;
    Ok(outcome(
        o.get_object(grpc::get_request(t, DATA, key, pb::Consistency::Eventual))
            .await,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_isolation_bad_tokens_roles_and_no_credential_in_logs() -> Result<()> {
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let op = cluster.client().await?;
    for t in [A, B] {
        cluster.create_tenant(&op, t, Redundancy::Lrs, DATA).await?;
        op.put_bytes(
            t,
            DATA,
            "k",
            Bytes::from_static(b"secret"),
            PutOptions::default(),
        )
        .await?;
        op.put_bytes(
            t,
            DATA,
            "p/x",
            Bytes::from_static(b"under p"),
            PutOptions::default(),
        )
        .await?;
    }
    let addrs: Vec<String> = cluster
        .node_ids()
        .into_iter()
        .map(|id| cluster.addr(id))
        .collect::<Result<_>>()?;
    let any = addrs[0].clone();
    let mut secrets = vec![cluster.operator().to_string()];

    // No credentials, and garbage, are Unauthenticated everywhere.
    all_refused(
        &every_call(&any, "", A).await?,
        Code::Unauthenticated,
        Some("credentials-missing"),
    )?;
    all_refused(
        &every_call(&any, "hunter2", A).await?,
        Code::Unauthenticated,
        Some("credentials-unknown"),
    )?;
    let wrong_op = stratus_core::auth::operator_secret_from(&[1; 32]);
    all_refused(
        &every_call(&any, &wrong_op, A).await?,
        Code::Unauthenticated,
        Some("operator-secret-invalid"),
    )?;

    // Tenant B's owner token: everything on A (and on a tenant that does not
    // exist) is PermissionDenied, never NotFound; on B it works.
    let b_owner = token(&op, &spec(B, Role::Owner)).await?;
    secrets.push(b_owner.clone());
    for addr in &addrs {
        all_refused(
            &every_call(addr, &b_owner, A).await?,
            Code::PermissionDenied,
            None,
        )?;
    }
    all_refused(
        &every_call(&any, &b_owner, "nosuchtenant").await?,
        Code::PermissionDenied,
        None,
    )?;
    let b = cluster
        .client_with(Some(Credential::new(&b_owner)?))
        .await?;
    ensure!(
        b.get_bytes(B, DATA, "k", GetOptions::default()).await?.1 == Bytes::from_static(b"secret")
    );
    ensure!(b.list(B, DATA, "", 100, None).await?.objects.len() == 2);
    // Cluster status is open to any caller, but not which tenants live where.
    let status = b.cluster_status().await?;
    ensure!(
        status.groups.iter().all(|g| g.tenants.is_empty()),
        "tenant names leaked"
    );

    // Expired, not yet valid, tampered, rotated-out tokens: Unauthenticated.
    let expired = token(
        &op,
        &TokenSpec {
            start_offset_s: -7200,
            valid_for: Duration::from_secs(3600),
            ..spec(A, Role::Reader)
        },
    )
    .await?;
    ensure!(
        get_code(&any, &expired, A, "k").await? == (Code::Unauthenticated, "token-expired".into())
    );
    let early = token(
        &op,
        &TokenSpec {
            start_offset_s: 3600,
            ..spec(A, Role::Reader)
        },
    )
    .await?;
    ensure!(
        get_code(&any, &early, A, "k").await?
            == (Code::Unauthenticated, "token-not-yet-valid".into())
    );
    let reader = token(&op, &spec(A, Role::Reader)).await?;
    secrets.push(reader.clone());
    ensure!(get_code(&any, &reader, A, "k").await?.0 == Code::Ok);
    // Flip one hex digit in the payload (the tenant name's bytes) and in the MAC.
    for at in [reader.len() / 3, reader.len() - 3] {
        let mut bytes = reader.clone().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(bytes)?;
        let got = get_code(&any, &tampered, A, "k").await?;
        ensure!(got.0 == Code::Unauthenticated, "tampered at {at}: {got:?}");
    }
    // Wrong resource: container-limited and prefix-limited tokens.
    let in_data = token(
        &op,
        &TokenSpec {
            container: Some(DATA.into()),
            ..spec(A, Role::Contributor)
        },
    )
    .await?;
    let mut oa = grpc::admin_as(&any, &in_data)?;
    let (code, _) = outcome(
        oa.create_container(pb::CreateContainerRequest {
            tenant: A.into(),
            name: "other".into(),
        })
        .await,
    );
    ensure!(
        code == Code::PermissionDenied,
        "container token created another container: {code:?}"
    );
    let listed = oa
        .list_containers(pb::ListContainersRequest { tenant: A.into() })
        .await?
        .into_inner();
    ensure!(
        listed
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            == [DATA]
    );
    let in_p = token(
        &op,
        &TokenSpec {
            container: Some(DATA.into()),
            prefix: Some("p/".into()),
            ..spec(A, Role::Reader)
        },
    )
    .await?;
    ensure!(get_code(&any, &in_p, A, "p/x").await?.0 == Code::Ok);
    ensure!(get_code(&any, &in_p, A, "k").await?.0 == Code::PermissionDenied);
    let pa = cluster.client_with(Some(Credential::new(&in_p)?)).await?;
    ensure!(pa.list(A, DATA, "p/", 100, None).await?.objects.len() == 1);
    match pa.list(A, DATA, "", 100, None).await {
        Err(Error::PermissionDenied { .. }) => {}
        other => bail!("a prefix token listed the whole container: {other:?}"),
    }
    // Wrong permission: a Reader cannot write or delete; a Contributor cannot
    // grant roles, create tokens or touch keys.
    let ra = cluster.client_with(Some(Credential::new(&reader)?)).await?;
    match ra
        .put_bytes(
            A,
            DATA,
            "k2",
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await
    {
        Err(Error::PermissionDenied { message, .. }) => {
            ensure!(message.contains("write"), "{message}")
        }
        other => bail!("reader put: {other:?}"),
    }
    ensure!(matches!(
        ra.delete(A, DATA, "k", None).await,
        Err(Error::PermissionDenied { .. })
    ));
    let contributor = token(&op, &spec(A, Role::Contributor)).await?;
    let ca = cluster
        .client_with(Some(Credential::new(&contributor)?))
        .await?;
    ca.put_bytes(
        A,
        DATA,
        "by-contributor",
        Bytes::from_static(b"ok"),
        PutOptions::default(),
    )
    .await?;
    match ca.grant_role(A, "eve", Role::Owner, None).await {
        Err(Error::PermissionDenied { message, .. }) => {
            ensure!(message.contains("manage"), "{message}")
        }
        other => bail!("contributor granted a role: {other:?}"),
    }
    ensure!(matches!(
        ca.create_token(&spec(A, Role::Reader)).await,
        Err(Error::PermissionDenied { .. })
    ));
    ensure!(matches!(
        ca.key(A, stratus_client::KeyOperation::Show).await,
        Err(Error::PermissionDenied { .. })
    ));

    // Revocation reaches every node.
    let (revoked, id) = token_and_id(&op, &spec(A, Role::Reader)).await?;
    op.revoke_token(&id).await?;
    for addr in &addrs {
        poll("revocation on every node", PROPAGATION_BOUND, || async {
            match get_code(addr, &revoked, A, "k").await? {
                (Code::Unauthenticated, s) if s == "token-revoked" => Ok(()),
                other => bail!("{addr}: {other:?}"),
            }
        })
        .await?;
    }

    // Principals: a token for bob is limited to bob's role assignments, live.
    op.grant_role(A, "bob", Role::Reader, Some(DATA)).await?;
    let bob = token(
        &op,
        &TokenSpec {
            principal: Some("bob".into()),
            ..spec(A, Role::Contributor)
        },
    )
    .await?;
    let bc = cluster.client_with(Some(Credential::new(&bob)?)).await?;
    ensure!(
        bc.get_bytes(A, DATA, "k", GetOptions::default()).await?.1 == Bytes::from_static(b"secret")
    );
    ensure!(matches!(
        bc.put_bytes(
            A,
            DATA,
            "bob",
            Bytes::from_static(b"x"),
            PutOptions::default()
        )
        .await,
        Err(Error::PermissionDenied { .. })
    ));
    let roles = op.list_roles(A).await?;
    ensure!(
        roles.len() == 1 && roles[0].principal == "bob" && roles[0].role == "reader",
        "{roles:?}"
    );
    op.revoke_role(A, "bob", Role::Reader, Some(DATA)).await?;
    for addr in &addrs {
        poll(
            "role revocation on every node",
            PROPAGATION_BOUND,
            || async {
                match get_code(addr, &bob, A, "k").await? {
                    (Code::PermissionDenied, _) => Ok(()),
                    other => bail!("{addr}: {other:?}"),
                }
            },
        )
        .await?;
    }

    // Signing keys: tokens of the previous key stay valid for one rotation.
    let (v2, _) = op.rotate_signing_key().await?;
    ensure!(
        get_code(&any, &reader, A, "k").await?.0 == Code::Ok,
        "previous key refused after one rotation"
    );
    let (v3, accepted) = op.rotate_signing_key().await?;
    ensure!(v3 == v2 + 1 && accepted == [v2, v3], "{accepted:?}");
    // Each node refuses version 1 once its directory copy applied the rotation.
    for addr in &addrs {
        poll("rotation on every node", PROPAGATION_BOUND, || async {
            match get_code(addr, &reader, A, "k").await? {
                (Code::Unauthenticated, s) if s == "token-key-unknown" => Ok(()),
                other => bail!("{addr}: {other:?}"),
            }
        })
        .await?;
    }
    // (b's token was signed with version 1: rotated out now.)
    ensure!(matches!(
        b.whoami().await,
        Err(Error::Unauthenticated { .. })
    ));
    let b_new = token(&op, &spec(B, Role::Owner)).await?;
    secrets.push(b_new.clone());
    let b = cluster.client_with(Some(Credential::new(&b_new)?)).await?;
    match b.rotate_signing_key().await {
        Err(Error::PermissionDenied { message, .. }) => {
            ensure!(message.contains("operator"), "{message}")
        }
        other => bail!("a tenant owner rotated the signing key: {other:?}"),
    }

    // The CLI: create a token, print it alone on stdout, use it, see who it is.
    let work = tempfile::tempdir()?;
    let cli = Program::new(&bins!().cli, work.path()).env("STRATUS_CA", cluster.ca_file());
    let endpoint = any.as_str();
    let out = cli
        .clone()
        .env("STRATUS_TOKEN", cluster.operator())
        .run(&[
            "--endpoint",
            endpoint,
            "token",
            "create",
            A,
            "--role",
            "reader",
            "--container",
            DATA,
            "--expires",
            "10m",
        ])
        .await?;
    out.ok()?;
    let cli_token = out.stdout_text().trim().to_string();
    ensure!(cli_token.starts_with("st1."), "stdout: {cli_token}");
    secrets.push(cli_token.clone());
    let who = cli
        .clone()
        .run(&[
            "--endpoint",
            endpoint,
            "--token",
            &cli_token,
            "--output",
            "json",
            "whoami",
        ])
        .await?;
    let who = who.ok()?.json()?;
    ensure!(
        who["kind"] == "token" && who["token"]["permissions"] == "rl",
        "{who}"
    );
    let denied = cli
        .clone()
        .env("STRATUS_TOKEN", &cli_token)
        .run(&["--endpoint", endpoint, "put", "-", &format!("{A}/{DATA}/x")])
        .await?;
    ensure!(
        denied.code != Some(0) && denied.stderr.contains("permission denied"),
        "{}",
        denied.stderr
    );
    let anonymous = cli.run(&["--endpoint", endpoint, "tenant", "list"]).await?;
    ensure!(
        anonymous.code != Some(0) && anonymous.stderr.contains("not authenticated"),
        "{}",
        anonymous.stderr
    );
    for o in [&who_stderr(&denied), &anonymous.stderr] {
        ensure!(
            !secrets.iter().any(|s| o.contains(s.as_str())),
            "a credential on stderr: {o}"
        );
    }

    // No credential, nor its MAC, in any node's log; nor the cluster credential
    // nodes present to each other, nor a line of any TLS private key.
    cluster.terminate_all().await?;
    let root = stratus_node::root_key::load(&cluster.dir().join("root.key"))?;
    secrets.push(stratus_core::auth::cluster_credential(&root));
    let mut key_lines = Vec::new();
    for entry in std::fs::read_dir(cluster.dir().join("tls"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "key") {
            let pem = std::fs::read_to_string(&path)?;
            key_lines.extend(
                pem.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                    .map(str::to_owned),
            );
        }
    }
    ensure!(
        !key_lines.is_empty(),
        "no TLS private key found to look for"
    );
    let mut hits = Vec::new();
    let mut audited = 0;
    for id in cluster.node_ids() {
        let log = cluster.log(id)?;
        // The logs do name tokens, by id only.
        audited += log.matches("token created").count();
        for s in &secrets {
            let mac = s.rsplit('.').next().context("credential")?;
            if log.contains(s.as_str()) || log.contains(mac) {
                hits.push(format!("node {id}: {}…", &s[..8]));
            }
        }
        if key_lines.iter().any(|l| log.contains(l.as_str())) {
            hits.push(format!("node {id}: a TLS private key"));
        }
    }
    ensure!(hits.is_empty(), "credentials found in logs: {hits:?}");
    ensure!(
        audited >= 5,
        "only {audited} `token created` lines: are the logs captured?"
    );
    Ok(())
}

fn who_stderr(o: &stratus_tests::cli::Output) -> String {
    format!("{}{}", o.stderr, o.stdout_text())
}

/// Records of `tenant` whose resource is `resource` and operation `operation`.
fn matching<'a>(
    records: &'a [stratus_core::audit::AuditRecord],
    operation: &str,
    resource: &str,
) -> Vec<&'a stratus_core::audit::AuditRecord> {
    records
        .iter()
        .filter(|r| r.event.operation == operation && r.event.resource == resource)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_each_call_once_and_verify_names_the_tampered_record() -> Result<()> {
    const T: &str = "auda";
    let mut cluster = Cluster::start(&bins!(), ClusterOptions::default()).await?;
    let op = cluster.client().await?;
    cluster.create_tenant(&op, T, Redundancy::Lrs, DATA).await?;
    let any = cluster.addr(cluster.node_ids()[0])?;
    let reader = token(&op, &spec(T, Role::Reader)).await?;

    // One call of each kind, each on a resource of its own.
    let get_as = |cred: String, key: &'static str| {
        let any = any.clone();
        async move { get_code(&any, &cred, T, key).await }
    };
    ensure!(get_as(String::new(), "anonymous").await?.0 == Code::Unauthenticated);
    let mut tampered = reader.clone().into_bytes();
    let at = tampered.len() - 2;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    ensure!(get_as(String::from_utf8(tampered)?, "tampered").await?.0 == Code::Unauthenticated);
    let put = grpc::put_messages(grpc::put_header(T, DATA, "denied"), b"x", 1024);
    let denied = grpc::objects_as(&any, &reader)?
        .put_object(futures::stream::iter(put))
        .await;
    ensure!(outcome(denied).0 == Code::PermissionDenied);
    ensure!(get_as(reader.clone(), "missing").await?.0 == Code::NotFound);
    grpc::keys_as(&any, cluster.operator())?
        .rotate_key(pb::KeyRequest { tenant: T.into() })
        .await?;
    op.grant_role(T, "carol", Role::Reader, None).await?;
    let failover = grpc::admin_as(&any, cluster.operator())?
        .failover(pb::FailoverRequest {
            tenant: T.into(),
            planned: true,
        })
        .await;
    ensure!(
        outcome(failover).0 == Code::FailedPrecondition,
        "LRS has no secondary"
    );

    let expected: [(&str, String, &str, &str); 7] = [
        (
            "GetObject",
            format!("object {T}/{DATA}/anonymous"),
            "anonymous",
            "Unauthenticated/credentials-missing",
        ),
        (
            "GetObject",
            format!("object {T}/{DATA}/tampered"),
            "unverified-credential",
            "Unauthenticated/token-signature-invalid",
        ),
        (
            "PutObject",
            format!("object {T}/{DATA}/denied"),
            "token:",
            "PermissionDenied/access-denied",
        ),
        (
            "GetObject",
            format!("object {T}/{DATA}/missing"),
            "token:",
            "NotFound/object-not-found",
        ),
        ("RotateKey", format!("tenant {T}"), "operator", "ok"),
        ("GrantRole", format!("tenant {T}"), "operator", "ok"),
        (
            "Failover",
            format!("tenant {T}"),
            "operator",
            "FailedPrecondition/",
        ),
    ];
    let records = poll(
        "every call in the audit log",
        Duration::from_secs(15),
        || async {
            let page = op.audit_all(T, 0, 100_000).await?;
            for (operation, resource, _, _) in &expected {
                if matching(&page.records, operation, resource).is_empty() {
                    bail!("no {operation} on {resource} yet");
                }
            }
            anyhow::Ok(page.records)
        },
    )
    .await?;
    // Later batches must not add a second record of any of them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = {
        let again = op.audit_all(T, 0, 100_000).await?.records;
        ensure!(again.len() >= records.len());
        again
    };
    for (operation, resource, principal, result) in &expected {
        let m = matching(&records, operation, resource);
        ensure!(
            m.len() == 1,
            "{} records of {operation} on {resource}: {m:?}",
            m.len()
        );
        ensure!(
            m[0].event.principal.starts_with(principal) && m[0].event.result.starts_with(result),
            "{operation} on {resource}: {:?}",
            m[0].event
        );
    }
    ensure!(stratus_core::audit::verify(&records, None)?.is_some());

    // Export with the CLI, verify, then tamper with a copy three ways.
    let work = tempfile::tempdir()?;
    let cli = Program::new(&bins!().cli, work.path())
        .env("STRATUS_TOKEN", cluster.operator())
        .env("STRATUS_CA", cluster.ca_file());
    let file = work.path().join("audit.jsonl");
    let file_arg = file.to_str().context("utf-8")?;
    cli.run(&["--endpoint", &any, "audit", "export", T, "--file", file_arg])
        .await?
        .ok()?;
    let lines: Vec<String> = std::fs::read_to_string(&file)?
        .lines()
        .map(str::to_owned)
        .collect();
    ensure!(lines.len() >= expected.len(), "{} lines", lines.len());
    cli.run(&["--endpoint", &any, "audit", "verify", file_arg])
        .await?
        .ok()?;
    cli.run(&["--endpoint", &any, "audit", "verify", T])
        .await?
        .ok()?;
    let n = lines.len();
    let verify_broken = |name: &'static str, content: Vec<String>, at: usize| {
        let path = work.path().join(name);
        let cli = cli.clone();
        async move {
            std::fs::write(&path, content.join("\n") + "\n")?;
            let out = cli
                .run(&["audit", "verify", path.to_str().context("utf-8")?])
                .await?;
            ensure!(out.code != Some(0), "{name}: verify passed");
            ensure!(
                out.stderr.contains(&format!("record {at} (seq")),
                "{name}: expected record {at} named, got: {}",
                out.stderr
            );
            anyhow::Ok(())
        }
    };
    for i in [0, n / 2, n - 2] {
        let mut edited = lines.clone();
        edited[i] = edited[i].replacen("\"result\":\"", "\"result\":\"x", 1);
        ensure!(edited[i] != lines[i]);
        verify_broken("edited.jsonl", edited, i + 1).await?;
        let mut deleted = lines.clone();
        deleted.remove(i);
        verify_broken("deleted.jsonl", deleted, i + 1).await?;
        let mut swapped = lines.clone();
        swapped.swap(i, i + 1);
        verify_broken("swapped.jsonl", swapped, i + 1).await?;
    }
    Ok(())
}
