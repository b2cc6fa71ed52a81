//! `stratus token create|revoke`, `stratus role grant|revoke|list`, `stratus whoami`.

use super::output::{format_time_ms, print_table, Out};
use crate::cli::output::say;
use crate::{Client, Role, RoleAssignment, TokenInfo, TokenSpec};
use clap::Subcommand;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for TENANT (needs Owner of the tenant, or the operator). The
    /// token alone goes to stdout: `export STRATUS_TOKEN=$(stratus token create ...)`.
    Create {
        tenant: String,
        #[arg(long, value_parser = parse_role, value_name = "reader|contributor|owner")]
        role: Role,
        /// Limit the token to one container.
        #[arg(long)]
        container: Option<String>,
        /// Limit the token to keys under this prefix (needs --container).
        #[arg(long)]
        prefix: Option<String>,
        /// Act for this principal: also limited by its role assignments
        /// (`stratus role grant`), checked on every request.
        #[arg(long)]
        principal: Option<String>,
        /// How long the token is valid (`30s`, `15m`, `1h`, `7d`; at most 30 days).
        #[arg(long, value_parser = parse_duration_s, value_name = "DURATION")]
        expires: i64,
        /// Start later (`10m`) or earlier (`-1h`) than now, on the node's clock.
        #[arg(long, value_parser = parse_duration_s, value_name = "DURATION", allow_hyphen_values = true, default_value = "0s")]
        start: i64,
    },
    /// Refuse a token from now on.
    Revoke {
        /// The token's id (32 hex digits, printed by `token create`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give PRINCIPAL a role on TENANT (or on one container of it).
    Grant {
        tenant: String,
        principal: String,
        #[arg(long, value_parser = parse_role, value_name = "reader|contributor|owner")]
        role: Role,
        #[arg(long)]
        container: Option<String>,
    },
    /// Remove a role assignment.
    Revoke {
        tenant: String,
        principal: String,
        #[arg(long, value_parser = parse_role, value_name = "reader|contributor|owner")]
        role: Role,
        #[arg(long)]
        container: Option<String>,
    },
    /// A tenant's role assignments.
    List { tenant: String },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s)
}

/// `90s`, `15m`, `1h`, `7d`, optionally negative (`-1h`), in seconds.
pub fn parse_duration_s(s: &str) -> Result<i64, String> {
    let (sign, body) = match s.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, s),
    };
    let at = body
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(body.len());
    let (digits, unit) = body.split_at(at);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 15m, 1h or 7d"))?;
    let unit_s = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}: use s, m, h or d")),
    };
    n.checked_mul(unit_s)
        .map(|v| v * sign)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn token_row(t: &TokenInfo) -> Vec<(&'static str, String)> {
    vec![
        ("id", t.id.clone()),
        ("tenant", t.tenant.clone()),
        (
            "container",
            t.container.clone().unwrap_or_else(|| "*".into()),
        ),
        ("prefix", t.prefix.clone().unwrap_or_else(|| "*".into())),
        ("permissions", t.permissions.clone()),
        (
            "principal",
            t.principal.clone().unwrap_or_else(|| "-".into()),
        ),
        ("start", format_time_ms(t.start_ms)),
        ("expiry", format_time_ms(t.expiry_ms)),
        ("revoked", t.revoked.to_string()),
    ]
}

pub async fn token(client: &Client, command: TokenCommand, out: Out) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            tenant,
            role,
            container,
            prefix,
            principal,
            expires,
            start,
        } => {
            if expires <= 0 {
                anyhow::bail!(super::output::UsageError(
                    "--expires must be positive, such as 1h".into()
                ));
            }
            let spec = TokenSpec {
                tenant,
                role,
                container,
                prefix,
                principal,
                start_offset_s: start,
                valid_for: Duration::from_secs(expires as u64),
            };
            let new = client.create_token(&spec).await?;
            if out.is_json() {
                return out.json(&serde_json::json!({
                    "token": new.token.expose(),
                    "info": new.info,
                }));
            }
            for (k, v) in token_row(&new.info) {
                eprintln!("{k:>12}: {v}");
            }
            say!("{}", new.token.expose());
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let info = client.revoke_token(&id).await?;
            if out.is_json() {
                return out.json(&info);
            }
            say!("revoked token {} of tenant {}", info.id, info.tenant);
            Ok(())
        }
    }
}

fn show_roles(tenant: &str, list: &[RoleAssignment], out: Out) -> anyhow::Result<()> {
    if out.is_json() {
        return out.json(list);
    }
    if list.is_empty() {
        say!("tenant {tenant} has no role assignments");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|a| {
            vec![
                a.principal.clone(),
                a.role.clone(),
                a.container.clone().unwrap_or_else(|| "(tenant)".into()),
            ]
        })
        .collect();
    print_table(&["PRINCIPAL", "ROLE", "SCOPE"], &rows);
    Ok(())
}

pub async fn role(client: &Client, command: RoleCommand, out: Out) -> anyhow::Result<()> {
    match command {
        RoleCommand::Grant {
            tenant,
            principal,
            role,
            container,
        } => {
            let list = client
                .grant_role(&tenant, &principal, role, container.as_deref())
                .await?;
            show_roles(&tenant, &list, out)
        }
        RoleCommand::Revoke {
            tenant,
            principal,
            role,
            container,
        } => {
            let list = client
                .revoke_role(&tenant, &principal, role, container.as_deref())
                .await?;
            show_roles(&tenant, &list, out)
        }
        RoleCommand::List { tenant } => {
            show_roles(&tenant, &client.list_roles(&tenant).await?, out)
        }
    }
}

pub async fn whoami(client: &Client, out: Out) -> anyhow::Result<()> {
    let me = client.whoami().await?;
    if out.is_json() {
        return out.json(&me);
    }
    match &me.token {
        None => say!("operator (cluster administration and every tenant)"),
        Some(t) => {
            say!("token");
            for (k, v) in token_row(t) {
                say!("{k:>12}: {v}");
            }
        }
    }
    Ok(())
}

pub async fn rotate_signing_key(client: &Client, out: Out) -> anyhow::Result<()> {
    let (current, accepted) = client.rotate_signing_key().await?;
    if out.is_json() {
        return out.json(&serde_json::json!({
            "current_version": current,
            "accepted_versions": accepted,
        }));
    }
    say!("token signing key version {current} is current; tokens signed with versions {accepted:?} are accepted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_sign() {
        assert_eq!(parse_duration_s("90"), Ok(90));
        assert_eq!(parse_duration_s("15m"), Ok(900));
        assert_eq!(parse_duration_s("1h"), Ok(3600));
        assert_eq!(parse_duration_s("7d"), Ok(604_800));
        assert_eq!(parse_duration_s("-1h"), Ok(-3600));
        assert!(parse_duration_s("1w").unwrap_err().contains("unit"));
        assert!(parse_duration_s("h").is_err());
    }
}
