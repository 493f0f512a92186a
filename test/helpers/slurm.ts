/**
 * A one-node Slurm cluster on localhost for tests, from Debian's `slurm-wlm` and `munge`: its own munge
 * key and socket, slurm.conf, state, spool, pid and log files in a temporary folder; `munged`,
 * `slurmctld` and `slurmd` run in the foreground as children of the test, so stop() (or, at worst,
 * the test process exiting) ends every one of them.
 *
 * What it takes to run without systemd, cgroups or accounting: proctrack/linuxproc and task/none (no
 * cgroup plugin), jobacct_gather/none and accounting_storage/none, select/cons_tres with CR_CPU so
 * tasks share the node by CPU, ReturnToService=2 so the node comes up when slurmd registers. munged
 * refuses a socket folder others cannot traverse and a key anyone but its owner can read: the
 * folder is 0755, the key 0400.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface LocalSlurm {
  dir: string;
  nodeName: string;
  /** The environment that points sbatch, squeue and scancel at this cluster. */
  env: NodeJS.ProcessEnv;
  /** The daemons' process ids (munged, slurmctld, slurmd). */
  pids: number[];
  /** Cancels every job, stops the daemons, waits for them to exit. */
  stop(): Promise<void>;
}

const NEEDED = ['munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'scontrol', 'sinfo'];
const SBIN_PATH = `${process.env.PATH ?? ''}:/usr/sbin:/sbin:/usr/bin`;

function which(cmd: string): string | null {
  for (const dir of SBIN_PATH.split(':')) {
    if (dir && fs.existsSync(path.join(dir, cmd))) return path.join(dir, cmd);
  }
  return null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(file: string, n = 15): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no output)';
  }
}

export async function startLocalSlurm(): Promise<LocalSlurm> {
  const missing = NEEDED.filter((c) => which(c) === null);
  if (missing.length) {
    throw new Error(`Slurm test: ${missing.join(', ')} not found; install them with 'apt-get install -y slurm-wlm munge' (.ci/run does)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'unforget-slurm-'));
  fs.chmodSync(dir, 0o755);
  for (const sub of ['state', 'spool']) fs.mkdirSync(path.join(dir, sub));
  const keyFile = path.join(dir, 'munge.key');
  fs.writeFileSync(keyFile, randomBytes(1024), { mode: 0o400 });
  const socket = path.join(dir, 'munge.socket');
  const nodeName = os.hostname().split('.')[0]!;
  const user = os.userInfo().username;
  const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
  const conf = path.join(dir, 'slurm.conf');
  fs.writeFileSync(
    conf,
    [
      'ClusterName=unforgettest',
      `SlurmctldHost=${nodeName}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      `SlurmUser=${user}`,
      `SlurmdUser=${user}`,
      'AuthType=auth/munge',
      'CredType=cred/munge',
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd.log`,
      'ProctrackType=proctrack/linuxproc',
      'TaskPlugin=task/none',
      'JobAcctGatherType=jobacct_gather/none',
      'AccountingStorageType=accounting_storage/none',
      'JobCompType=jobcomp/none',
      'SelectType=select/cons_tres',
      'SelectTypeParameters=CR_CPU',
      'SchedulerType=sched/builtin',
      'ReturnToService=2',
      'MpiDefault=none',
      // A container may show slurmd fewer CPUs than nproc: the node is still taken as configured, not drained.
      'SlurmdParameters=config_overrides',
      'MinJobAge=60',
      'KillWait=5',
      `NodeName=${nodeName} NodeAddr=127.0.0.1 CPUs=${os.availableParallelism()} State=UNKNOWN`,
      'PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
      '',
    ].join('\n'),
  );
  const env: NodeJS.ProcessEnv = { ...process.env, SLURM_CONF: conf, PATH: SBIN_PATH };

  const daemons: ChildProcess[] = [];
  // Even if the test process ends without stop(): no daemon outlives it.
  const killAll = () => {
    for (const d of daemons) if (d.exitCode === null && d.signalCode === null) d.kill('SIGKILL');
  };
  process.on('exit', killAll);
  const start = (name: string, args: string[]) => {
    const outFile = path.join(dir, `${name}.out`);
    const fd = fs.openSync(outFile, 'w');
    const child = spawn(which(name)!, args, { env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    daemons.push(child);
    return { child, outFile };
  };
  const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { env, encoding: 'utf8', timeout: 20_000 });
  const until = async (what: string, cond: () => boolean, daemon: { child: ChildProcess; outFile: string }, ms = 20_000) => {
    const t0 = Date.now();
    while (!cond()) {
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) {
        throw new Error(`Slurm test: ${path.basename(daemon.outFile, '.out')} exited while waiting for ${what}:\n${tail(daemon.outFile)}`);
      }
      if (Date.now() - t0 > ms) throw new Error(`Slurm test: timed out waiting for ${what}:\n${tail(daemon.outFile)}`);
      await sleep(100);
    }
  };

  const stop = async () => {
    process.off('exit', killAll);
    if (daemons.some((d) => d.exitCode === null && d.signalCode === null)) {
      run('scancel', [`--user=${user}`]);
      for (let i = 0; i < 50; i++) {
        const q = run('squeue', ['-h']);
        if (q.status !== 0 || q.stdout.trim() === '') break;
        await sleep(100);
      }
    }
    // slurmd first (its jobs are gone), the controller, then munge they both use.
    for (const d of [...daemons].reverse()) {
      if (d.exitCode !== null || d.signalCode !== null) continue;
      const exited = new Promise((r) => d.once('exit', r));
      d.kill('SIGTERM');
      const t = setTimeout(() => d.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    if (!process.env.UNFORGET_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    const munged = start('munged', ['-F', `--key-file=${keyFile}`, `--socket=${socket}`, `--pid-file=${dir}/munged.pid`, `--log-file=${dir}/munged.log`, `--seed-file=${dir}/munged.seed`]);
    await until('munged to open its socket', () => fs.existsSync(socket), munged);
    const ctld = start('slurmctld', ['-D', '-i', '-f', conf]);
    await until('slurmctld to answer', () => /is UP/.test(run('scontrol', ['ping']).stdout), ctld);
    const slurmd = start('slurmd', ['-D', '-N', nodeName, '-f', conf]);
    await until(
      `node ${nodeName} to be idle`,
      () => {
        const state = run('sinfo', ['-h', '-N', '-n', nodeName, '-o', '%T']).stdout.trim();
        // A node that registered as down or drained (a restart, a mismatch slurmd reported) is put back.
        if (/down|drain|fail/.test(state)) run('scontrol', ['update', `nodename=${nodeName}`, 'state=resume']);
        return state === 'idle';
      },
      slurmd,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, nodeName, env, pids: daemons.map((d) => d.pid!), stop };
}
