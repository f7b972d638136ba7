/**
 * Read-only and full disks for tests. A read-only directory: chmod 0555 for an ordinary user;
 * root ignores modes, so as root a read-only tmpfs is mounted instead. A full disk: a 256 KiB
 * tmpfs, which needs root. Each returns null (the caller skips, saying why) when it cannot be had.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestDisk {
  dir: string;
  cleanup(): void;
}

const isRoot = (): boolean => process.getuid?.() === 0;

function mountTmpfs(options: string): TestDisk | null {
  const dir = mkdtempSync(join(tmpdir(), 'grpo-disk-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return null;
  }
  return {
    dir,
    cleanup: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A directory nothing can be written into, or null. */
export function readOnlyDir(): TestDisk | null {
  if (isRoot()) return mountTmpfs('ro,size=64k');
  const dir = mkdtempSync(join(tmpdir(), 'grpo-ro-'));
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o555);
  return {
    dir,
    cleanup: () => {
      chmodSync(dir, 0o755);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A directory on a 256 KiB file system (writes past it fail with ENOSPC), or null (not root). */
export function tinyDisk(): TestDisk | null {
  return isRoot() ? mountTmpfs('size=256k') : null;
}

export const SKIP_FULL_DISK = 'a full disk needs a small tmpfs, which only root may mount';
