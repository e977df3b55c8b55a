//! The one-shot subcommands: migrate, token create, channel list.

use sluice_store::{Role, Secrets};

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
        TokenCommand::Create { ledger, name, role } => {
            let store = ledger.open().await?;
            store.ensure_default_project().await?;
            let role = Role::parse(&role).expect("clap restricts the role");
            let (token, secret) = store.create_api_token(&name, role).await?;
            store.close().await;
            println!(
                "created {} token {:?} ({}); it is shown only once:",
                token.role.as_str(),
                token.name,
                token.id
            );
            println!("{secret}");
            Ok(())
        }
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
