//! `privy build`: `podman build` or `buildah bud` with the private files in
//! every RUN step, then the image scanned.

use super::{common, Cli, Outcome};
use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Files for this build's RUN steps, uploaded to the daemon as one build ticket
    #[command(flatten)]
    pub specs: common::UploadSpecs,
    /// Remove the image when the scan finds a leak
    #[arg(long)]
    pub rm_on_leak: bool,
    /// The engine command: `podman build ARGS...` or `buildah bud ARGS...`
    #[arg(last = true, required = true, value_name = "ENGINE")]
    pub engine: Vec<String>,
}

/// Exit status: the engine's when it fails or the image is clean, 1 on a
/// leak; an error before the engine ran or after it succeeded means privy
/// could not check the image (2, as `privy scan`: see `main`).
pub(super) fn execute(cli: &Cli, args: &BuildArgs) -> Result<Outcome> {
    super::logging::init(None, "warn");
    let code = (|| -> Result<i32> {
        let cfg = common::load_config(cli)?;
        let files = common::collect_files(&cfg, &args.specs)?;
        let client = common::client_for(&cfg, args.specs.socket.as_deref());
        let opts = crate::build::BuildOptions {
            files,
            ttl: args.specs.ttl,
            rm_on_leak: args.rm_on_leak,
            engine: args.engine.clone(),
            binary: std::env::current_exe()?.canonicalize()?,
            config_path: cli.config.as_deref().map(common::absolute).transpose()?,
        };
        Ok(crate::build::build(&cfg, &client, opts)?)
    })()
    .context("build")?;
    // An engine status is 0-255, or 128+signal (also below 256).
    Ok(match code {
        0 => Outcome::Success,
        c => Outcome::Status(u8::try_from(c).unwrap_or(1)),
    })
}
