"""Files that a crash cannot leave half written, folders checked before work starts, and one writer per folder.

* Writes go to a hidden partial file named after the process that writes it (``.frame_003.png.<pid>.<random>
  .partial``), then are renamed into place: readers see the old file or the whole new one, never a part, and two
  processes never share a partial. ``remove_partials`` clears only what dead processes left.
* ``writable_folder`` checks, before any minutes are spent, that a folder can be created and written (not a file,
  not ``/proc``, not read-only, not full), and says what is wrong in one sentence.
* ``folder_lock`` holds a folder for one writer (``filelock``: a kernel lock the operating system drops when its
  process dies, so a killed run never leaves a stale lock); a second writer is told which process holds it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import FolderBusyError, TTLessonError

PARTIAL_SUFFIX = ".partial"
LOCK_NAME = ".ttlesson.lock"


# --- atomic writes -------------------------------------------------------------------------------------------

def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    partial = write_partial(path, data)
    try:
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def partial_path(path: Path, suffix: str = "") -> Path:
    """A new, empty, hidden partial file beside ``path`` that only this process uses (``suffix`` ends its name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX + suffix)
    os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes files private; frames and videos are ordinary files
    os.close(fd)
    return Path(name)


def write_partial(path: Path, data: bytes | str) -> Path:
    """Write ``data`` durably next to ``path`` under a hidden partial name; the caller renames it into place."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    partial = partial_path(path)
    try:
        with open(partial, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial


def staging_folder(parent: Path, label: str) -> Path:
    """A new hidden folder in ``parent`` for work that is renamed into place or removed when done
    (``.<label>.<pid>.<random>``), made after removing the ones that killed processes left behind."""
    remove_stale_staging(parent, label)
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{label}.{os.getpid()}.", dir=parent))
    folder.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; what it becomes is an ordinary folder
    return folder


def remove_stale_staging(parent: Path, label: str) -> None:
    """Remove the ``staging_folder``s of ``label`` whose process is gone (a SIGKILL leaves them)."""
    pattern = re.compile(re.escape(f".{label}.") + r"([0-9]+)\.[A-Za-z0-9_]+$")
    for path in parent.glob(f".{glob.escape(label)}.*") if parent.is_dir() else ():
        named = pattern.match(path.name)
        if named and path.is_dir() and not path.is_symlink() and not process_alive(int(named.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_partials(folder: Path, others_only: bool = False) -> int:
    """Delete the partial files in ``folder`` that no process is writing any more; returns how many there were.

    A partial's name carries its writer's pid: it is stale once that process is gone. Partials without a pid
    (ttlesson before 0.2) and this process's own are stale too, unless ``others_only`` (a folder others may
    share, such as a video's: only the partials of dead processes are removed there).
    """
    if not folder.is_dir():
        return 0
    stale = []
    for path in folder.glob(f".*{PARTIAL_SUFFIX}*"):
        writer = _writer(path)
        if writer is None:
            gone = not others_only and path.name.endswith(PARTIAL_SUFFIX)
        elif writer == os.getpid():
            gone = not others_only
        else:
            gone = not process_alive(writer)
        if gone:
            stale.append(path)
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def is_partial_of(path: Path, target: Path) -> bool:
    """Whether ``path`` is a partial file ``partial_path`` made for ``target`` (by any process)."""
    return path.parent == target.parent and path.name.startswith(f".{target.name}.") and _writer(path) is not None


def _writer(partial: Path) -> int | None:
    """The pid in a partial file's name (``.NAME.<pid>.<random>.partial[.ext]``), or None."""
    named = re.search(r"\.([0-9]+)\.[a-z0-9_]+" + re.escape(PARTIAL_SUFFIX) + r"(\.[A-Za-z0-9]+)?$", partial.name)
    return int(named.group(1)) if named else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    return True


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- files the user names --------------------------------------------------------------------------------------

def read_user_file(path: Path, what: str, limit: int, error: type[TTLessonError] = TTLessonError) -> bytes:
    """The bytes of a file the user named (``what`` names it: "Storyboard file"), checked for what it is first:
    a FIFO or a device (``/dev/zero``) would be read forever, so only a regular file of at most ``limit`` bytes is
    read, and never more than that (a ``/proc`` file says it holds 0 bytes whatever it holds)."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {os_error_sentence(err, path, 'read')}.") from err
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is {_special_kind(info.st_mode)}, not a saved file; give the path of a file.")
    if info.st_size > limit:
        raise error(f"{what} {path} is {_mib(info.st_size)}, far larger than ttlesson ever reads there "
                    f"({_mib(limit)} at most); check the path.")
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(handle, "rb") as opened:
            data = opened.read(limit + 1)
    except OSError as err:
        raise error(f"{what} {path} cannot be read: {os_error_sentence(err, path, 'read')}.") from err
    if len(data) > limit:
        raise error(f"{what} {path} holds more than {_mib(limit)}, far more than ttlesson ever reads there; check "
                    "the path.")
    return data


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a disk device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


# --- folders checked before work starts ----------------------------------------------------------------------

def os_error_sentence(err: OSError, path: object, doing: str = "write") -> str:
    """What an ``OSError`` on ``path`` means for the user, and what to do, as the start of one sentence."""
    where = f"{path}"
    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk holding {where} is full; free some space or choose a folder on another disk"
    if code == errno.EROFS:
        return f"{where} is on a read-only file system; choose a folder you can write to"
    if code in (errno.EACCES, errno.EPERM):
        fix = "check its permissions, or give another file" if doing == "read" else "choose a folder you can write to"
        return f"you are not allowed to {doing} {where}; {fix}"
    if code == errno.ENOTDIR:
        return f"part of {where} is a file, not a folder; choose another path or move that file away"
    if code == errno.EISDIR:
        return f"{where} is a folder where a file belongs; move it away or choose another path"
    if code == errno.ELOOP:
        return f"{where} is a symbolic link that points to itself (a loop); remove it or choose another path"
    if code == errno.ENOENT:
        return f"{where} cannot be created there (a folder on the way does not exist or cannot hold files)"
    if code == errno.ENAMETOOLONG:
        return f"{where} is a name too long for the file system; choose a shorter path"
    return f"{where} cannot be {'read' if doing == 'read' else 'written'} ({err.strerror or err}); choose another path"


def writable_folder(folder: Path, role: str, need_bytes: int = 0, fills: bool = False) -> Path:
    """Create ``folder`` if needed and prove it can take a file (and ``need_bytes`` more); one sentence if not.

    ``role`` names it for the message (``--out``). Pseudo file systems (``/proc``, ``/sys``, ``/dev`` but its
    ``/dev/shm``) are refused: writes there do not make files. A folder that ``fills`` with ttlesson's own files
    (``frames/``, ``manifest.json``, the lock) must also not be one that others share (``refuse_shared_folder``).
    """
    folder = Path(os.path.expanduser(os.fspath(folder)))
    resolved = resolved_path(folder)
    pseudo = _pseudo_root(resolved)
    if pseudo:
        raise TTLessonError(f"{role} {folder} is inside {pseudo}, a view of the running system that cannot hold "
                            "files; choose a folder on a disk.")
    if fills:
        refuse_shared_folder(folder, resolved, role)
    if folder.exists() and not folder.is_dir():
        raise TTLessonError(f"{role} {folder} is a file, not a folder; choose a folder (it is created if missing).")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = partial_path(folder / ".write-test")
        try:
            with open(probe, "wb") as handle:
                handle.write(b"ttlesson")
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as err:
        raise TTLessonError(f"{role} {folder} cannot be used: {os_error_sentence(err, err.filename or folder)}.") \
            from err
    free = shutil.disk_usage(folder).free
    if need_bytes and free < need_bytes:
        raise TTLessonError(f"{role} {folder} is on a disk with {_mib(free)} free, and this needs about "
                            f"{_mib(need_bytes)}; free some space or choose a folder on another disk.")
    return folder


# Folders a render must never fill: the root, the system's own trees, and the shared folders above everyone's
# work (a home folder itself, /tmp itself), where frames/ and manifest.json would mix with everything else there.
SYSTEM_TREES = ("/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/sbin", "/usr")
SHARED_FOLDERS = ("/", "/home", "/root", "/tmp", "/var", "/var/tmp", "/opt", "/srv", "/mnt", "/media", "/run")


def refuse_shared_folder(folder: Path, resolved: Path, role: str) -> None:
    """One sentence if ``folder`` is the root, a system folder, or a folder shared above everyone's work."""
    if not sys.platform.startswith("linux"):
        return
    tree = next((root for root in SYSTEM_TREES if resolved == Path(root) or Path(root) in resolved.parents), None)
    if tree is not None:
        raise TTLessonError(f"{role} {folder} is inside {tree}, which belongs to the system; choose a folder of "
                            "your own (e.g. ~/ttlesson/out).")
    homes = {Path(path) for path in SHARED_FOLDERS} | {resolved_path(Path.home())} | \
        ({resolved} if resolved.parent == Path("/home") else set())
    if resolved in homes:
        what = "the file system's root" if resolved == Path("/") else "a folder shared by everything in it"
        example = "~/ttlesson/out" if resolved in (Path("/"), Path("/home")) else folder / "my-film"
        raise TTLessonError(f"{role} {folder} is {what}; ttlesson fills its folder with frames/, manifest.json "
                            f"and a lock file, so give it a folder of its own (e.g. {example}).")


def _pseudo_root(resolved: Path) -> str | None:
    """``/proc``, ``/sys`` or ``/dev`` when ``resolved`` is inside one (``/dev/shm`` is a disk in memory: allowed)."""
    if not sys.platform.startswith("linux"):
        return None
    if resolved == Path("/dev/shm") or Path("/dev/shm") in resolved.parents:
        return None
    return next((root for root in ("/proc", "/sys", "/dev") if resolved == Path(root) or Path(root) in
                 resolved.parents), None)


def resolved_path(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: resolve() raises RuntimeError before Python 3.13
        return Path(os.path.abspath(path))


def _mib(size: int) -> str:
    return f"{size / 1024 ** 2:.1f} MiB" if size < 1024 ** 3 else f"{size / 1024 ** 3:.1f} GiB"


# --- one writer per folder -----------------------------------------------------------------------------------

@contextlib.contextmanager
def folder_lock(folder: Path, fix: str) -> Iterator[None]:
    """Hold ``folder`` for this process while the block runs; raise ``FolderBusyError`` if another holds it.

    ``fix`` says what the second caller can do instead. The rule, for folders several users share: a lock file
    that this user cannot open for writing (another user's ``.ttlesson.lock``, a read-only folder) is locked
    through a read-only handle, which the kernel's lock honours just the same. Only a folder that has no lock file
    and cannot be given one runs unlocked: no ttlesson process has written there, and this one cannot.
    """
    from filelock import FileLock, Timeout

    path = Path(folder) / LOCK_NAME
    lock = FileLock(str(path), mode=0o666)  # the umask decides; a group-writable folder gets a group lock file
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise FolderBusyError(f"{folder} is in use by {_holder(path)}; {fix}") from err
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise TTLessonError(f"{folder} cannot be locked: {os_error_sentence(err, path)}.") from err
        with _read_only_lock(path, fix):
            yield
        return
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _read_only_lock(path: Path, fix: str) -> Iterator[None]:
    """The same kernel lock as ``FileLock``'s (``flock``), taken through a read-only handle of ``path``."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, and no shared Unix folders
        yield
        return
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        yield
        return
    except OSError as err:
        raise TTLessonError(f"{path.parent} cannot be locked: {os_error_sentence(err, path, 'read')}.") from err
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            raise FolderBusyError(f"{path.parent} is in use by {_holder(path)}; {fix}") from err
        yield
    finally:
        os.close(handle)


def _holder(lock_path: Path) -> str:
    """Which process holds the lock on ``lock_path``, in words (Linux reads ``/proc/locks``)."""
    pid = _lock_holder_pid(lock_path)
    if pid is None:
        return "another process"
    if pid == os.getpid():
        return f"this process (pid {pid}: another render or import running in it)"
    command = _command_line(pid)
    return f"process {pid}" + (f" ({command})" if command else "")


def _lock_holder_pid(lock_path: Path) -> int | None:
    try:
        stat = os.stat(lock_path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device and fields[4].isdigit():
            return int(fields[4])
    return None


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    words = [word.decode("utf-8", "replace") for word in raw.split(b"\0") if word]
    if words and Path(words[0]).name.startswith("python") and len(words) > 1:
        words = words[1:]
    if words:
        words[0] = Path(words[0]).name
    text = " ".join(words)
    return text if len(text) <= 120 else text[:117] + "…"
