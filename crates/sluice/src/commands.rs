//! The one-shot subcommands: migrate, token create, channel list, secrets rotate.

use sluice_store::{NewToken, Role, Secrets, Store};

use crate::cli::{ChannelCommand, LedgerArgs, SecretsCommand, TokenCommand};

/// `sluice migrate`
pub async fn migrate(ledger: LedgerArgs) -> anyhow::Result<()> {
    let store = ledger.open().await?;
    store.ensure_default_project().await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

/// `sluice token …`
pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            ledger,
            name,
            user,
            project,
            role,
        } => {
            let store = ledger.open().await?;
            store.ensure_default_project().await?;
            let role = Role::parse(&role).expect("clap restricts the role");
            let user_id = match &user {
                Some(u) => match store.user_by_name(u).await? {
                    Some(r) => Some(r.user.id),
                    None => anyhow::bail!("no user named {u:?}"),
                },
                None => None,
            };
            let project_id = match &project {
                Some(p) => Some(project_id(&store, p).await?),
                None => None,
            };
            let new = NewToken {
                name,
                role,
                user_id,
                project_id,
                expires_at: None,
            };
            let (token, secret) = store.create_token(&new, "cli").await?;
            store.close().await;
            let whose = user.map_or_else(|| "instance".to_string(), |u| format!("{u}'s"));
            println!(
                "created {whose} {} token {:?} ({}); it is shown only once:",
                token.role.as_str(),
                token.name,
                token.id
            );
            println!("{secret}");
            Ok(())
        }
    }
}

/// A project named by its id or its name.
async fn project_id(store: &Store, given: &str) -> anyhow::Result<uuid::Uuid> {
    if let Ok(id) = uuid::Uuid::parse_str(given) {
        if store.project_exists(id).await? {
            return Ok(id);
        }
    }
    match store.project_by_name(given).await? {
        Some(p) => Ok(p.id),
        None => anyhow::bail!("no project named {given:?}"),
    }
}

/// `sluice channel …`
pub async fn channel(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::List { ledger } => {
            let store = ledger.open().await?;
            let mut after = None;
            loop {
                let page = store.list_channels(None, after, 500).await?;
                for c in &page {
                    let state = if c.enabled { "enabled" } else { "disabled" };
                    println!("{}\t{}\t{}\t{}", c.id, state, c.name, c.sink_url);
                }
                match page.last() {
                    Some(c) if page.len() == 500 => after = Some(c.id),
                    _ => break,
                }
            }
            store.close().await;
            Ok(())
        }
    }
}

/// `sluice secrets …`
pub async fn secrets(cmd: SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Rotate { ledger, secrets } => {
            std::fs::create_dir_all(&ledger.data_dir)?;
            let keys = Secrets::load(secrets.secret_key.as_deref(), &ledger.data_dir)?;
            let key_id = keys.rotate()?;
            // Opened after the rotation, so its keyring already seals with the new key.
            let store = ledger.open_with_secrets(&secrets).await?;
            let n = store.reseal_credentials().await?;
            store.close().await;
            println!("re-sealed {n} credentials under key {key_id}");
            Ok(())
        }
    }
}
