# fish completion for lkm (lkm completion fish)
complete -c lkm -f
complete -c lkm -n __fish_use_subcommand -a 'autoload build check completion depmod dkms dmesg insmod install kernel keygen ksyms lsmod modinfo modprobe new prepare rmmod sign static-nodes try uninstall vm' -d command
complete -c lkm -n '__fish_seen_subcommand_from autoload' -s h
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l help
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l version
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l coldplug
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l once
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l dry-run
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l json
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l settle -r
complete -c lkm -n '__fish_seen_subcommand_from autoload' -l timeout -r
complete -c lkm -n '__fish_seen_subcommand_from build' -s h
complete -c lkm -n '__fish_seen_subcommand_from build' -l help
complete -c lkm -n '__fish_seen_subcommand_from build' -l version
complete -c lkm -n '__fish_seen_subcommand_from build' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from build' -s q
complete -c lkm -n '__fish_seen_subcommand_from build' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from build' -s v
complete -c lkm -n '__fish_seen_subcommand_from build' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from build' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from build' -l jobs -r
complete -c lkm -n '__fish_seen_subcommand_from build' -s j -r
complete -c lkm -n '__fish_seen_subcommand_from build' -l no-fetch
complete -c lkm -n '__fish_seen_subcommand_from build' -F
complete -c lkm -n '__fish_seen_subcommand_from check' -s h
complete -c lkm -n '__fish_seen_subcommand_from check' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from check' -l running
complete -c lkm -n '__fish_seen_subcommand_from check' -l sig-enforce
complete -c lkm -n '__fish_seen_subcommand_from check' -l json
complete -c lkm -n '__fish_seen_subcommand_from check' -l color
complete -c lkm -n '__fish_seen_subcommand_from check' -l help
complete -c lkm -n '__fish_seen_subcommand_from check' -l version
complete -c lkm -n '__fish_seen_subcommand_from check' -F
complete -c lkm -n '__fish_seen_subcommand_from completion' -s h
complete -c lkm -n '__fish_seen_subcommand_from completion' -l candidates -r -a '(lkm completion --candidates kinds 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from completion' -l root -r
complete -c lkm -n '__fish_seen_subcommand_from completion' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from completion' -l help
complete -c lkm -n '__fish_seen_subcommand_from completion' -l version
complete -c lkm -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s a
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s A
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s b -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s m -r -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s o -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s C -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s E -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s F -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s e
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s v
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s n
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s P -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s w
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s V
complete -c lkm -n '__fish_seen_subcommand_from depmod' -s h
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l all
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l quick
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l basedir -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l moduledir -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l outdir -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l config -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l symvers -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l filesyms -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l errsyms
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l show
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l dry-run
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l symbol-prefix -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l warn
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l version
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l help
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l no-cache
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l cache-dir -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l index-layout -r
complete -c lkm -n '__fish_seen_subcommand_from depmod' -l json
complete -c lkm -n '__fish_seen_subcommand_from depmod' -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s m -r -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l module -r -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s v -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l kernelver -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s a -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l arch -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s j -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s c -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l dkmstree -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l sourcetree -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l installtree -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l kernelsourcedir -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l config -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l archive -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l root -r
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l all
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l force
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l no-depmod
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l json
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s q
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l binaries-only
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l source-only
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l remove
complete -c lkm -n '__fish_seen_subcommand_from dkms' -s h
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l help
complete -c lkm -n '__fish_seen_subcommand_from dkms' -l version
complete -c lkm -n '__fish_seen_subcommand_from dkms' -a 'add build install uninstall unbuild remove status autoinstall mktarball ldtarball hooks'
complete -c lkm -n '__fish_seen_subcommand_from dkms' -a '(lkm completion --candidates dkms 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s x
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s t
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s l -r
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s L
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s w
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -s h
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l decode
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l notime
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l level -r
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l color
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l follow
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l module -r -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l json
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l help
complete -c lkm -n '__fish_seen_subcommand_from dmesg' -l version
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s p
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s s
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s f
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s v
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s V
complete -c lkm -n '__fish_seen_subcommand_from insmod' -s h
complete -c lkm -n '__fish_seen_subcommand_from insmod' -l version
complete -c lkm -n '__fish_seen_subcommand_from insmod' -l help
complete -c lkm -n '__fish_seen_subcommand_from insmod' -l decompress -r
complete -c lkm -n '__fish_seen_subcommand_from insmod' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from insmod' -F
complete -c lkm -n '__fish_seen_subcommand_from install' -s h
complete -c lkm -n '__fish_seen_subcommand_from install' -l help
complete -c lkm -n '__fish_seen_subcommand_from install' -l version
complete -c lkm -n '__fish_seen_subcommand_from install' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from install' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from install' -l root -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l dir -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l key -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l cert -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l hash -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l index-layout -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l cache-dir -r
complete -c lkm -n '__fish_seen_subcommand_from install' -l no-cache
complete -c lkm -n '__fish_seen_subcommand_from install' -F
complete -c lkm -n '__fish_seen_subcommand_from kernel' -s h
complete -c lkm -n '__fish_seen_subcommand_from kernel' -l help
complete -c lkm -n '__fish_seen_subcommand_from kernel' -l version
complete -c lkm -n '__fish_seen_subcommand_from kernel' -a 'list fetch rm'
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from list' -s h
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from list' -l help
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from list' -l json
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from list' -l arch -r
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from list' -l no-archive
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -s h
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -l help
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -s q
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -s v
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from fetch' -l arch -r
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -s h
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -l help
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -s q
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -s v
complete -c lkm -n '__fish_seen_subcommand_from kernel; and __fish_seen_subcommand_from rm' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from keygen' -s h
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l help
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l version
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l key -r
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l cert -r
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l cn -r
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l days -r
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l der
complete -c lkm -n '__fish_seen_subcommand_from keygen' -l force
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -s h
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -l module -r -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -l exported
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -l json
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -l help
complete -c lkm -n '__fish_seen_subcommand_from ksyms' -l version
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -s h
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -s V
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -l json
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -l tree
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -l help
complete -c lkm -n '__fish_seen_subcommand_from lsmod' -l version
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s a
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s d
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s l
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s p
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s n
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s 0
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s m
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s F -r
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s b -r
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s V
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -s h
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l author
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l description
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l license
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l parameters
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l filename
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l null
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l modname
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l field -r
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l set-version -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l basedir -r
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l version
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l help
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -l json
complete -c lkm -n '__fish_seen_subcommand_from modinfo' -a '(lkm completion --candidates modules 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s a
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s w -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s R
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s i
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s b
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s f
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s D
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s c
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s n
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s C -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s d -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s S -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s s
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s q
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s v
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s V
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -s h
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l all
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l remove
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l remove-dependencies
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l remove-holders
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l wait -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l resolve-alias
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l first-time
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l ignore-install
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l ignore-remove
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l use-blacklist
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l force
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l force-modversion
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l force-vermagic
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l show-depends
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l showconfig
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l show-config
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l show-modversions
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l dump-modversions
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l show-exports
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l dry-run
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l show
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l config -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l dirname -r
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l set-version -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l syslog
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l version
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l help
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -l json
complete -c lkm -n '__fish_seen_subcommand_from modprobe' -a '(lkm completion --candidates modules 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from new' -s h
complete -c lkm -n '__fish_seen_subcommand_from new' -l help
complete -c lkm -n '__fish_seen_subcommand_from new' -l version
complete -c lkm -n '__fish_seen_subcommand_from new' -l template -r
complete -c lkm -n '__fish_seen_subcommand_from new' -s t -r
complete -c lkm -n '__fish_seen_subcommand_from new' -l author -r
complete -c lkm -n '__fish_seen_subcommand_from new' -F
complete -c lkm -n '__fish_seen_subcommand_from prepare' -s h
complete -c lkm -n '__fish_seen_subcommand_from prepare' -l help
complete -c lkm -n '__fish_seen_subcommand_from prepare' -l version
complete -c lkm -n '__fish_seen_subcommand_from prepare' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from prepare' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from prepare' -l dry-run
complete -c lkm -n '__fish_seen_subcommand_from prepare' -s n
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -s f
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -s s
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -s v
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -s V
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -s h
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -l force
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -l syslog
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -l version
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -l help
complete -c lkm -n '__fish_seen_subcommand_from rmmod' -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from sign' -s h
complete -c lkm -n '__fish_seen_subcommand_from sign' -l help
complete -c lkm -n '__fish_seen_subcommand_from sign' -l version
complete -c lkm -n '__fish_seen_subcommand_from sign' -l key -r
complete -c lkm -n '__fish_seen_subcommand_from sign' -l cert -r
complete -c lkm -n '__fish_seen_subcommand_from sign' -l hash -r
complete -c lkm -n '__fish_seen_subcommand_from sign' -l output -r
complete -c lkm -n '__fish_seen_subcommand_from sign' -s o -r
complete -c lkm -n '__fish_seen_subcommand_from sign' -l keyid
complete -c lkm -n '__fish_seen_subcommand_from sign' -F
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -s o -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -s f -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -s h
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -s b -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l output -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l format -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l help
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l basedir -r
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from static-nodes' -l version
complete -c lkm -n '__fish_seen_subcommand_from try' -s h
complete -c lkm -n '__fish_seen_subcommand_from try' -l help
complete -c lkm -n '__fish_seen_subcommand_from try' -l version
complete -c lkm -n '__fish_seen_subcommand_from try' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from try' -s q
complete -c lkm -n '__fish_seen_subcommand_from try' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from try' -s v
complete -c lkm -n '__fish_seen_subcommand_from try' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from try' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from try' -l jobs -r
complete -c lkm -n '__fish_seen_subcommand_from try' -s j -r
complete -c lkm -n '__fish_seen_subcommand_from try' -l no-fetch
complete -c lkm -n '__fish_seen_subcommand_from try' -l console -r
complete -c lkm -n '__fish_seen_subcommand_from try' -l timeout -r
complete -c lkm -n '__fish_seen_subcommand_from try' -l gdb
complete -c lkm -n '__fish_seen_subcommand_from try' -l gdb-file -r
complete -c lkm -n '__fish_seen_subcommand_from try' -l color
complete -c lkm -n '__fish_seen_subcommand_from try' -l json
complete -c lkm -n '__fish_seen_subcommand_from try' -l shell
complete -c lkm -n '__fish_seen_subcommand_from try' -F
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -s h
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l help
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l version
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -s k -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l root -r
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l index-layout -r
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l cache-dir -r
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -l no-cache
complete -c lkm -n '__fish_seen_subcommand_from uninstall' -a '(lkm completion --candidates loaded 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from vm' -s h
complete -c lkm -n '__fish_seen_subcommand_from vm' -s q
complete -c lkm -n '__fish_seen_subcommand_from vm' -s v
complete -c lkm -n '__fish_seen_subcommand_from vm' -l kernel -r -a '(lkm completion --candidates kernels 2>/dev/null)'
complete -c lkm -n '__fish_seen_subcommand_from vm' -l memory -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l timeout -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l console -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l share -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l modprobe -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l device -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l append -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l qmp -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l cpus -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l gdb
complete -c lkm -n '__fish_seen_subcommand_from vm' -l gdb-file -r
complete -c lkm -n '__fish_seen_subcommand_from vm' -l dry-run
complete -c lkm -n '__fish_seen_subcommand_from vm' -l no-fetch
complete -c lkm -n '__fish_seen_subcommand_from vm' -l quiet
complete -c lkm -n '__fish_seen_subcommand_from vm' -l verbose
complete -c lkm -n '__fish_seen_subcommand_from vm' -l help
complete -c lkm -n '__fish_seen_subcommand_from vm' -l version
complete -c lkm -n '__fish_seen_subcommand_from vm' -a 'run shell'
complete -c depmod -w 'lkm depmod'
complete -c dkms -w 'lkm dkms'
complete -c insmod -w 'lkm insmod'
complete -c lsmod -w 'lkm lsmod'
complete -c modinfo -w 'lkm modinfo'
complete -c modprobe -w 'lkm modprobe'
complete -c rmmod -w 'lkm rmmod'
