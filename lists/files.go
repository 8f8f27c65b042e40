package lists

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Files names the list file of each list; a list without a file is empty.
type Files map[Kind]string

// LoadFiles reads every named file. Any unreadable file or invalid entry
// fails the whole load.
func LoadFiles(files Files) (*Set, error) {
	b := NewBuilder()
	for _, k := range Kinds() {
		p := files[k]
		if p == "" {
			continue
		}
		if err := b.AddFile(k, p); err != nil {
			return nil, fmt.Errorf("lists.%s: %w", k, err)
		}
	}
	return b.Set()
}

// FilesStatus is what the status page shows about the file lists.
type FilesStatus struct {
	// Loaded is when the lists in force were read; Changed the newest
	// modification time among their files.
	Loaded, Changed time.Time
	// LastError is why the last reload was refused ("" if it was not);
	// the lists read before it stay in force.
	LastError string
	Failed    time.Time
}

// Watcher reloads the list files into a Holder when they change. Editors
// and deploy tools replace files by renaming, so it watches the files'
// directories, and it waits for a quiet moment (debounce) so that a file
// written in several steps is read once, complete.
type Watcher struct {
	files    Files
	holder   *Holder
	debounce time.Duration
	log      *zap.Logger
	fw       *fsnotify.Watcher
	names    map[string]bool // cleaned paths of the files
	done     chan struct{}
	finished chan struct{}

	mu sync.Mutex
	st FilesStatus
}

// LoadInto reads the files and installs them in h as FromFiles, with no
// watching: at start and on SIGHUP, where a bad file refuses the
// configuration.
func LoadInto(files Files, h *Holder) (FilesStatus, error) {
	s, err := LoadFiles(files)
	if err != nil {
		return FilesStatus{}, err
	}
	h.Replace(FromFiles, s)
	return FilesStatus{Loaded: time.Now(), Changed: newest(files)}, nil
}

// Watch starts watching files, whose lists are already in h (LoadInto),
// and reloads them into h after each change.
func Watch(files Files, h *Holder, st FilesStatus, debounce time.Duration, log *zap.Logger) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &Watcher{files: files, holder: h, debounce: debounce, log: log, fw: fw, st: st,
		names: map[string]bool{}, done: make(chan struct{}), finished: make(chan struct{})}
	dirs := map[string]bool{}
	for _, p := range files {
		if p == "" {
			continue
		}
		p = filepath.Clean(p)
		w.names[p] = true
		dirs[filepath.Dir(p)] = true
	}
	for d := range dirs {
		if err := fw.Add(d); err != nil {
			fw.Close()
			return nil, fmt.Errorf("watching %s: %w", d, err)
		}
	}
	go w.run()
	return w, nil
}

func (w *Watcher) run() {
	defer close(w.finished)
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-w.done:
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if !w.names[filepath.Clean(ev.Name)] || ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(w.debounce)
			} else {
				timer.Reset(w.debounce)
			}
			fire = timer.C
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			w.log.Warn("list file watch error", zap.Error(err))
		case <-fire:
			fire = nil
			w.reload()
		}
	}
}

// reload reads the files again. A bad file keeps the lists in force and
// is logged once until it changes to another problem or is fixed.
func (w *Watcher) reload() {
	s, err := LoadFiles(w.files)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		msg := err.Error()
		if msg != w.st.LastError {
			w.log.Error("list files changed but refused; keeping the lists in force", zap.Error(err))
		}
		w.st.LastError, w.st.Failed = msg, time.Now()
		return
	}
	w.holder.Replace(FromFiles, s)
	if w.st.LastError != "" {
		w.log.Info("list files reloaded; the earlier problem is fixed")
	} else {
		w.log.Info("list files reloaded")
	}
	w.st = FilesStatus{Loaded: time.Now(), Changed: newest(w.files)}
}

// Status returns the watcher's state.
func (w *Watcher) Status() FilesStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

// Close stops watching.
func (w *Watcher) Close() {
	select {
	case <-w.done:
		return
	default:
	}
	close(w.done)
	w.fw.Close()
	<-w.finished
}

func newest(files Files) time.Time {
	var t time.Time
	for _, p := range files {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

// IsParseError reports whether err names invalid entries (as opposed to
// an unreadable file).
func IsParseError(err error) bool {
	var pe *ParseError
	return errors.As(err, &pe)
}
