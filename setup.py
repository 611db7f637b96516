"Packaging for condbook; every setting lives in settings.ini (nbdev 2 layout)."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini')
cfg = cfg['DEFAULT']

setuptools.setup(
    name=cfg['lib_name'], version=cfg['version'], description=cfg['description'],
    author=cfg['author'], author_email=cfg['author_email'], url=cfg['git_url'],
    license='Apache Software License 2.0', keywords=cfg['keywords'],
    classifiers=['License :: OSI Approved :: Apache Software License', 'Programming Language :: Python :: 3.11',
                 'Intended Audience :: Science/Research'],
    packages=setuptools.find_packages(include=['condbook', 'condbook.*']),
    include_package_data=True, package_data={'condbook': ['imagenet_wnids.txt']},
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split(), 'timm': cfg['timm_requirements'].split()},
    python_requires='>=' + cfg['min_python'],
    long_description=open('README.md').read(), long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
