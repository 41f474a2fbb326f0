"""Package metadata is read from settings.ini (nbdev's configuration), so there is one source of truth."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']
licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[cfg['license']]
reqs = cfg.get('requirements', '').split()
dev_reqs = cfg.get('dev_requirements', '').split()
ray_reqs = cfg.get('ray_requirements', '').split()   # optional: `pis-nb personalize/bench --engine ray`
tb_reqs = cfg.get('tensorboard_requirements', '').split()   # optional: write_tensorboard (06_train)
scripts = [s.strip() for s in cfg.get('console_scripts', '').split('\n') if s.strip()]

setuptools.setup(
    name=cfg['repo'], version=cfg['version'], description=cfg['description'],
    long_description=(Path(__file__).parent/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'], author_email=cfg['author_email'], license=lic[0],
    classifiers=['Programming Language :: Python :: 3', f'License :: {lic[1]}',
                 'Topic :: Scientific/Engineering :: Image Recognition'],
    url=cfg['git_url'], packages=setuptools.find_packages(include=['pis_nb', 'pis_nb.*']),
    include_package_data=True, install_requires=reqs, extras_require={'dev': dev_reqs, 'ray': ray_reqs, 'tensorboard': tb_reqs},
    python_requires='>=' + cfg['min_python'], zip_safe=False,
    entry_points={'console_scripts': scripts, 'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
